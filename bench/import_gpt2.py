"""GPT-2 small (124M) imported into the app, as a visitor on a Space would load openai-community/gpt2.

What it measures
----------------
A randomly initialised ``GPT2LMHeadModel`` of GPT-2 small's shape (12 layers, 12 heads, width 768,
context 1024, vocabulary 50,257) is saved by transformers itself, with a byte-level BPE of 50,257
tokens trained on the built-in corpora (the real GPT-2 tokenizer would need the internet), and
served by the tests' Hub server on 127.0.0.1 as the repo ``openai-community/gpt2``. ``python
app.py`` is started with ``HF_ENDPOINT`` pointing there, and driven through ``gradio_client``:

- **load**: the Hub tab's ``/load`` (download, import, save as a checkpoint), one round trip;
- **memory**: the app's resident set (``VmRSS``) before the load, after it and after the tabs below;
- **tokens/s**: Compare (``/compare``) with that model alone writing ``--tokens`` new tokens, median;
- **attention**: the ``/attention`` heatmaps (one head, every head, the average) on the Attention
  tab's default prompt, median;
- **Inside**: the ``/inside`` walk on its default prompt, median;
- **Model stats**: ``/stats`` (parameter table, FLOPs counted on the model), median.

Random weights write nonsense, but every cost above depends only on the shape.

Usage: ``python -m bench.import_gpt2`` (about 3 minutes on 2 cores), ``--rounds N``, ``--tokens N``,
``--json PATH``. Stdout carries the markdown report; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from babygpt.machine import describe, log
from bench.app_speed import INSIDE_PROMPT, PROMPT, memory_of, running_app, timed

ROOT = Path(__file__).resolve().parent.parent
REPO = "openai-community/gpt2"
VOCAB = 50_257


def gpt2_small_files(folder: Path) -> dict[str, bytes]:
    """A random GPT-2 small as transformers saves it, and a 50,257-token byte-level BPE."""
    import torch
    import transformers

    from babygpt.data import BUILTIN_FILES, load_text
    from babygpt.tokenizer import BPETokenizer

    text = "\n".join(load_text(name) for name in BUILTIN_FILES)
    tokenizer = BPETokenizer.train(text, vocab_size=VOCAB).tokenizer
    short = VOCAB - tokenizer.get_vocab_size()  # the corpora run out of pairs before 50,257
    tokenizer.add_tokens([f"<unused{i}>" for i in range(short)])
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def median_ms(seconds: list[float]) -> float:
    return 1e3 * statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=50, help="new tokens in the Compare round")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from gradio_client import Client

    from hub_server import FakeHub

    env = describe()
    with tempfile.TemporaryDirectory() as folder, FakeHub(token="hf_bench") as hub:
        started = time.perf_counter()
        files = gpt2_small_files(Path(folder))
        log(f"random GPT-2 small saved by transformers in {time.perf_counter() - started:.1f} s "
            f"({len(files['model.safetensors']) / 2**20:.0f} MB of weights)")
        with hub.lock:
            hub._create(REPO, private=False)
            hub._commit(hub.repos[REPO], files, "GPT-2 small, random weights")
        served = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_bench"}
        with running_app(served) as (process, url, _):
            client = Client(url, verbose=False, analytics_enabled=False)
            before = memory_of(process.pid)["VmRSS"]
            load_seconds = timed(lambda: client.predict(REPO, api_name="/load"))
            name = "my-" + REPO.replace("/", "-")
            loaded = memory_of(process.pid)["VmRSS"]
            log(f"loaded in {load_seconds:.1f} s; RSS {before / 2**20:.0f} -> {loaded / 2**20:.0f} MB")
            rounds = {"compare": [], "attention": [], "inside": [], "stats": []}
            calls = {
                "compare": lambda r: client.predict([name], PROMPT, args.tokens, 1.0, 0, 1.0, r, api_name="/compare"),
                "attention": lambda r: client.predict(name, PROMPT, 0, 0, api_name="/attention"),
                "inside": lambda r: client.predict(name, INSIDE_PROMPT, -1, 0, 0, 1.0, 0, 1.0, 0, api_name="/inside"),
                "stats": lambda r: client.predict(name, None, 12, 1_000_000, api_name="/stats"),
            }
            for r in range(args.rounds):
                for what, call in calls.items():
                    rounds[what].append(timed(lambda call=call, r=r: call(r)))
                log(f"round {r + 1}: " + ", ".join(f"{k} {1e3 * v[-1]:.0f} ms" for k, v in rounds.items()))
            after = memory_of(process.pid)
    results = {
        "machine": env, "load_seconds": load_seconds, "rss_before_mb": before / 2**20, "rss_loaded_mb": loaded / 2**20,
        "rss_after_mb": after["VmRSS"] / 2**20, "peak_rss_mb": after["VmHWM"] / 2**20,
        "tokens_per_second": args.tokens / statistics.median(rounds["compare"]),
        **{f"{what}_ms": median_ms(seconds) for what, seconds in rounds.items()},
    }
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict, args) -> str:
    machine = results["machine"]
    return f"""## GPT-2 small (124M, random weights) imported into the app

{machine['date']}: {machine['cpu']}, {machine['logical cpus']} logical CPUs, {machine['memory']}; medians of
{args.rounds} rounds, each a round trip through gradio_client.

| what | figure |
|---|---|
| Hub tab load (download 475 MB, import, save) | {results['load_seconds']:.1f} s |
| app resident memory: before, after the load, after the tabs (peak) | {results['rss_before_mb']:,.0f} MB, \
{results['rss_loaded_mb']:,.0f} MB, {results['rss_after_mb']:,.0f} MB ({results['peak_rss_mb']:,.0f} MB) |
| Compare, {args.tokens} new tokens | {results['tokens_per_second']:.1f} tokens/s ({results['compare_ms']:,.0f} ms) |
| Attention heatmaps (one head, all 144, the average) | {results['attention_ms']:,.0f} ms |
| Inside walk | {results['inside_ms']:,.0f} ms |
| Model stats (parameters, FLOPs counted) | {results['stats_ms']:,.0f} ms |
"""


if __name__ == "__main__":
    raise SystemExit(main())

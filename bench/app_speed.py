"""The app as a visitor feels it: start-up, Compare, an attention heatmap, and memory.

What it measures
----------------
``python app.py`` is started on a free port of 127.0.0.1, exactly as a user starts it, and driven
through ``gradio_client`` as the browser's requests are (every figure is a round trip, queue and
HTTP included):

- **start**: from launching ``python app.py`` until ``GET /`` answers 200 (every shipped
  checkpoint is listed by then), median of ``--starts`` launches;
- **Compare**: the ``/compare`` endpoint with the five costliest shipped models (``gpt``, the
  time-weighted and low-rank variants, ``llama`` and the ``gpt-kjv-lora`` adapter, which runs its
  adapters unmerged) writing 200 new tokens each after the tab's default prompt; wall time until
  the last column is complete, median of rounds;
- **attention heatmap**: the ``/attention`` endpoint (one head, every head of every layer, and the
  head average, as three plotly figures) for ``gpt`` and ``llama`` on the tab's default prompt,
  median of rounds;
- **Inside**: the ``/inside`` endpoint (the whole walk of a shipped model on the tab's default
  prompt, every card's figure included) for ``gpt`` and ``llama``, and ``/inside_sample`` (the
  temperature slider: only the last card, from the logits kept), median of rounds;
- **a temperature change in a browser**: Debian's chromium (through Playwright, when both are
  there) opens the Inside tab and types temperatures into its slider's box; each is timed by the page
  itself, from the change until the redone card is on screen (the next animation frame after it
  arrived). This is what the goal is held to: ``gradio_client`` looks for its answer every 50 ms
  (a ``time.sleep(0.05)`` in its message loop), so its figure is mostly the client's own waiting;
- **Compare after a Hub push**: the Hub tab's ``/push`` of ``gpt`` to the tests' Hub server on
  127.0.0.1 (the app is started with ``HF_ENDPOINT`` pointing there), then Compare again, against
  the rounds before it in the same app: a push's torch work (its card's samples) once left a second
  OpenMP pool on gradio's thread, after which every Compare took twice as long;
- **memory**: the app process's resident set (``VmRSS`` in ``/proc``) when idle after start-up, and
  again after the Compare and attention rounds; then its peak resident set (``VmHWM``) while it
  trains the Train tab's default preset (``gpt``: nanoGPT's CPU recipe) for ``--train-seconds``;
- **training speed in the app**: that run's tokens/s (evaluations included), against the same
  preset trained for as long by ``python -m babygpt train`` in this run (the app's handlers run in
  worker threads, where torch once ran 30 % slower: see ``babygpt/ui/__init__.py``).

Goals (issue "Performance"): start <= 6 s, Compare of 5 models x 200 tokens <= 1.5 s (round two;
3 s before), a heatmap <= 300 ms, idle RSS <= 1 GB, training the default preset <= 2 GB; (issue "Inside") Inside's walk
<= 500 ms, a temperature change <= 150 ms; (this round) Compare after a Hub push <= 1.2x the Compare before
it in the same app.

Usage: ``python -m bench.app_speed`` (about 2 minutes on 2 cores), ``--quick`` (one start, one
round, 5 s of training), ``--json PATH``. Stdout carries the markdown report; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from babygpt.machine import describe, load_average, log
from babygpt.ui.inside_tab import DEFAULT_PROMPT as INSIDE_DEFAULT_PROMPT

ROOT = Path(__file__).resolve().parent.parent

COMPARE_MODELS = ["gpt", "gpt-time-weighted", "gpt-low-rank", "llama", "gpt-kjv-lora"]
PROMPT = "Hamlet:\n"  # the Compare and Attention tabs' default prompt
INSIDE_PROMPT = INSIDE_DEFAULT_PROMPT
DEFAULT_TRAINING = dict(preset="gpt", n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12,
                        max_iters=2000, learning_rate=1e-3)  # the Train tab as it opens
GIB = 1024**3
HUB_TOKEN = "hf_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_of(pid: int) -> dict[str, int]:
    """Resident set now (VmRSS) and at its peak so far (VmHWM), in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024  # the kernel reports kB
    return fields


@contextlib.contextmanager
def running_app(env_extra: dict | None = None):
    """(process, url, seconds until the page answered); ``env_extra`` adds to its environment."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
           **(env_extra or {})}
    output = tempfile.TemporaryFile("w+")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=output, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.perf_counter() - started > 120:
                output.seek(0)
                raise RuntimeError("the app did not start:\n" + output.read())
            time.sleep(0.02)
        yield process, url, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def tokens_per_second(metrics: dict) -> float:
    """Training throughput over the run so far, its evaluations included."""
    return metrics["tokens_seen"] / metrics["train_seconds"]


def cli_training_speed(seconds: float) -> float:
    """The default preset trained by ``python -m babygpt train`` for ``seconds``: the reference."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "babygpt", "train", "--preset", DEFAULT_TRAINING["preset"],
                        "--max-seconds", str(seconds), "--out", out], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return tokens_per_second(json.loads((Path(out) / "metrics.json").read_text()))


# Run in the page: for each temperature, type it into the Inside tab's slider box and time until the
# sampling card says it (then one more animation frame, when the browser paints it).
TEMPERATURE_IN_PAGE = """async (temperatures) => {
  const label = 'number input for temperature (0 = greedy)';
  const box = [...document.querySelectorAll(`input[aria-label="${label}"]`)].find(e => e.offsetParent);
  const card = document.getElementById('inside-sampling');
  const seconds = [];
  for (const t of temperatures) {
    const wanted = `divided by the temperature ${t} and`;
    const started = performance.now();
    const shown = new Promise(resolve => {
      // textContent of the card alone: reading the whole page's innerText would lay it out each time
      const watch = new MutationObserver(() => {
        if (card.textContent.includes(wanted)) { watch.disconnect(); requestAnimationFrame(resolve); }
      });
      watch.observe(card, {subtree: true, childList: true, characterData: true});
    });
    box.value = String(t);
    box.dispatchEvent(new Event('input', {bubbles: true}));
    box.dispatchEvent(new Event('change', {bubbles: true}));
    await shown;
    seconds.push((performance.now() - started) / 1000);
  }
  return seconds;
}"""


def browser_temperature_seconds(url: str, changes: int) -> list[float] | None:
    """A temperature change as a visitor sees it, in Debian's chromium; None without chromium or Playwright."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    temperatures = [round(0.55 + 0.1 * i, 2) for i in range(changes + 1)]  # the first change warms the page
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script("performance.setResourceTimingBufferSize(100000)")
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Inside").click()
            page.wait_for_function("document.body.innerText.includes('Sampling the next token')", timeout=120_000)
            # the page's first-open requests all answered (Start here's samples, the slowest, and then a
            # second without a new one): none of them is timed
            page.wait_for_function("document.querySelectorAll('.rung-sample').length > 0", timeout=120_000)
            requests, quiet_since = -1, time.perf_counter()
            while time.perf_counter() - quiet_since < 1.0:
                now = page.evaluate("performance.getEntriesByType('resource').length")
                if now != requests:
                    requests, quiet_since = now, time.perf_counter()
                page.wait_for_timeout(100)
            return page.evaluate(TEMPERATURE_IN_PAGE, temperatures)[1:]
        finally:
            browser.close()


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one start, one round, 5 s of training")
    parser.add_argument("--starts", type=int, default=None, help="app launches timed (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of Compare and of heatmaps (default 5)")
    parser.add_argument("--train-seconds", type=float, default=None,
                        help="how long to train the default preset (default 30)")
    parser.add_argument("--compare-tokens", type=int, default=200, help="new tokens each model writes in Compare")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    starts = args.starts or (1 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 5)
    train_seconds = args.train_seconds or (5 if args.quick else 30)
    from gradio_client import Client

    env = describe()
    compare_label = f"{len(COMPARE_MODELS)} models x {args.compare_tokens} tokens"
    start_seconds = []
    for i in range(starts - 1):  # the last launch is the one measured further below
        with running_app() as (_, _, seconds):
            start_seconds.append(seconds)
            log(f"start {i + 1}: {seconds:.2f} s")
    sys.path.insert(0, str(ROOT / "tests"))
    from hub_server import FakeHub

    hub_env = lambda hub: {"HF_ENDPOINT": hub.url, "HF_TOKEN": HUB_TOKEN, "HF_HUB_OFFLINE": "0",  # noqa: E731
                           "HF_HUB_DISABLE_XET": "1"}  # the app pushes to the tests' Hub server on 127.0.0.1
    with FakeHub(token=HUB_TOKEN) as hub, running_app(hub_env(hub)) as (process, url, seconds):
        start_seconds.append(seconds)
        log(f"start {starts}: {seconds:.2f} s")
        time.sleep(1.0)  # let the first page's requests settle before calling it idle
        idle = memory_of(process.pid)["VmRSS"]
        client = Client(url, verbose=False, analytics_enabled=False)

        def compare(seed: int):
            _, texts, _, _ = client.predict(COMPARE_MODELS, PROMPT, args.compare_tokens, 1.0, 0, 1.0, seed,
                                            api_name="/compare")
            if set(texts) != set(COMPARE_MODELS):
                raise RuntimeError(f"Compare answered for {sorted(texts)}, not {COMPARE_MODELS}")

        def inside(model: str):
            note, *_ = client.predict(model, INSIDE_PROMPT, -1, 0, 0, 1.0, 0, 1.0, 0, api_name="/inside")
            if "tokens" not in note:
                raise RuntimeError(f"the Inside tab answered {note!r}")

        def resample(temperature: float):
            text = client.predict(temperature, 0, 1.0, 0, api_name="/inside_sample")
            if "Sampling the next token" not in text:
                raise RuntimeError(f"the temperature slider answered {text!r}")

        def attention(model: str):
            single, every, average, note = client.predict(model, PROMPT, 0, 0, api_name="/attention")
            if "tokens" not in note:
                raise RuntimeError(f"the attention tab answered {note!r}")

        # A visitor's first Compare also loads the five models from disk: reported apart.
        first_compare = timed(lambda: compare(0))
        compare_seconds, heatmap_seconds = [], {"gpt": [], "llama": []}
        inside_seconds, slider_seconds = {"gpt": [], "llama": []}, []
        for r in range(rounds):
            compare_seconds.append(timed(lambda r=r: compare(1 + r)))
            for model in heatmap_seconds:
                if r == 0:
                    attention(model)  # warm: the model's first load is not the heatmap's time
                heatmap_seconds[model].append(timed(lambda model=model: attention(model)))
                if r == 0:
                    inside(model)
                inside_seconds[model].append(timed(lambda model=model: inside(model)))
            slider_seconds.append(timed(lambda r=r: resample(0.5 + 0.1 * r)))
            log(f"round {r + 1}: compare {compare_seconds[-1]:.2f} s, heatmaps "
                + ", ".join(f"{m} {1e3 * t[-1]:.0f} ms" for m, t in heatmap_seconds.items())
                + ", Inside " + ", ".join(f"{m} {1e3 * t[-1]:.0f} ms" for m, t in inside_seconds.items())
                + f", slider {1e3 * slider_seconds[-1]:.0f} ms")
        after_use = memory_of(process.pid)["VmRSS"]
        push_seconds = timed(lambda: client.predict("gpt", "bench/gpt", False, "babygpt", api_name="/push"))
        if "bench/gpt" not in hub.repos:
            raise RuntimeError("the push did not reach the Hub server")
        after_push_seconds = [timed(lambda r=r: compare(100 + r)) for r in range(min(rounds, 3))]
        log(f"a Hub push {push_seconds:.2f} s, then compare " + ", ".join(f"{t:.2f}" for t in after_push_seconds)
            + " s")
        log("a temperature change in chromium")
        browser_seconds = browser_temperature_seconds(url, 3 if args.quick else 9)

        log(f"training the default preset for {train_seconds:.0f} s")
        training = dict(DEFAULT_TRAINING, max_seconds=train_seconds, corpus="shakespeare", upload=None, x_axis="step")
        before_training = memory_of(process.pid)["VmHWM"]
        started = time.perf_counter()
        *_, archive = client.predict(*training.values(), api_name="/train")
        trained_for = time.perf_counter() - started
        memory = memory_of(process.pid)
        with zipfile.ZipFile(archive) as run:
            app_speed = tokens_per_second(json.loads(run.read("metrics.json")))
    log("the same training from the command line, for reference")
    cli_speed = cli_training_speed(train_seconds)
    env["load average at the end"] = load_average()

    result = {
        "start_seconds": start_seconds, "start_median": statistics.median(start_seconds),
        "compare_first_seconds": first_compare, "compare_seconds": compare_seconds,
        "compare_median": statistics.median(compare_seconds),
        "push_seconds": push_seconds, "compare_after_push_seconds": after_push_seconds,
        "compare_after_push_median": statistics.median(after_push_seconds),
        "heatmap_seconds": heatmap_seconds,
        "heatmap_median": {m: statistics.median(t) for m, t in heatmap_seconds.items()},
        "inside_seconds": inside_seconds, "inside_median": {m: statistics.median(t) for m, t in inside_seconds.items()},
        "slider_seconds": slider_seconds, "slider_median": statistics.median(slider_seconds),
        "browser_slider_seconds": browser_seconds,
        "browser_slider_median": statistics.median(browser_seconds) if browser_seconds else None,
        "idle_rss": idle, "rss_after_use": after_use, "peak_rss_before_training": before_training,
        "peak_rss_training": memory["VmHWM"], "rss_after_training": memory["VmRSS"], "trained_for": trained_for,
        "app_training_tokens_per_s": app_speed, "cli_training_tokens_per_s": cli_speed,
    }
    print("# babygpt app latency and memory (python app.py on 127.0.0.1, driven by gradio_client)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(f"- Compare models: {', '.join(COMPARE_MODELS)}; prompt {PROMPT!r}; {rounds} rounds, {starts} starts\n")
    print("| measure | median | every run |")
    print("|---|---:|---|")
    print(f"| start: `python app.py` until the page answers | {result['start_median']:.2f} s | "
          f"{', '.join(f'{s:.2f}' for s in start_seconds)} s |")
    print(f"| Compare, {compare_label} | {result['compare_median']:.2f} s | "
          f"{', '.join(f'{s:.2f}' for s in compare_seconds)} s (the first after start, loading the models: "
          f"{first_compare:.2f} s) |")
    print(f"| Compare, {compare_label}, after a Hub push | {result['compare_after_push_median']:.2f} s | "
          f"{', '.join(f'{s:.2f}' for s in after_push_seconds)} s (the push itself: {push_seconds:.2f} s) |")
    for model, times in heatmap_seconds.items():
        print(f"| attention heatmaps, {model} | {1e3 * result['heatmap_median'][model]:.0f} ms | "
              f"{', '.join(f'{1e3 * t:.0f}' for t in times)} ms |")
    for model, times in inside_seconds.items():
        print(f"| Inside, the whole walk, {model} | {1e3 * result['inside_median'][model]:.0f} ms | "
              f"{', '.join(f'{1e3 * t:.0f}' for t in times)} ms |")
    print(f"| Inside, a temperature change through gradio_client | {1e3 * result['slider_median']:.0f} ms | "
          f"{', '.join(f'{1e3 * t:.0f}' for t in slider_seconds)} ms |")
    if browser_seconds:
        print(f"| Inside, a temperature change in chromium, until painted | "
              f"{1e3 * result['browser_slider_median']:.0f} ms | {', '.join(f'{1e3 * t:.0f}' for t in browser_seconds)}"
              " ms |")
    else:
        print("| Inside, a temperature change in chromium | not measured | no chromium or no Playwright here |")
    print(f"| resident memory, idle after start | {idle / GIB:.2f} GiB | after the rounds: {after_use / GIB:.2f} GiB |")
    print(f"| peak resident memory, training the default preset for {trained_for:.0f} s | "
          f"{memory['VmHWM'] / GIB:.2f} GiB | peak before training {before_training / GIB:.2f} GiB |")
    print(f"| training the default preset in the app, tokens/s | {app_speed:,.0f} | "
          f"{app_speed / cli_speed:.2f}x the command line's {cli_speed:,.0f} in the same run |")

    goals = []

    def goal(text: str, value: float, threshold: float, unit: str) -> None:
        status = "PASS" if value <= threshold else "MISS"
        shown = f"{value:.2f} {unit} (goal ≤ {threshold} {unit})"
        goals.append({"goal": text, "status": status, "value": value, "threshold": threshold, "shown": shown})
        print(f"- {status}  {text}: {shown}")

    print("\n## Goals\n")
    goal("app start until the page answers", result["start_median"], 6.0, "s")
    goal(f"Compare, {compare_label.replace('models', 'shipped models')}", result["compare_median"], 1.5, "s")
    goal("Compare after a Hub push, against before it in the same app", result["compare_after_push_median"]
         / result["compare_median"], 1.2, "x")
    goal("attention heatmap, slowest shipped model", 1e3 * max(result["heatmap_median"].values()), 300.0, "ms")
    goal("Inside, the whole walk, slowest shipped model", 1e3 * max(result["inside_median"].values()), 500.0, "ms")
    if browser_seconds:
        goal("Inside, a temperature change (in chromium)", 1e3 * result["browser_slider_median"], 150.0, "ms")
    else:  # the client's own 50-ms polling counts here: a miss may be the client's
        goal("Inside, a temperature change (through gradio_client)", 1e3 * result["slider_median"], 150.0, "ms")
    goal("idle resident memory", idle / GIB, 1.0, "GiB")
    goal("peak resident memory while training the default preset", memory["VmHWM"] / GIB, 2.0, "GiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "result": result, "goals": goals}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

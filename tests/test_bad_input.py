"""Every bad input we tried, and what the user sees: one row of SECURITY.md per case, each a test.

A case is (surface, what is sent, a piece of the message the user sees). The Python API raises
``ValueError`` with that message; the command line exits non-zero and prints it, with no
traceback; the app answers it as an error through the same queue the page uses. The last test
checks that SECURITY.md's table lists exactly these cases.
"""

import json
import math
import re
import shutil
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from babygpt.ablation import AblationSpec, plan
from babygpt.checkpoint import load_checkpoint
from babygpt.models import build_model
from babygpt.runs import new_run
from babygpt.sampling import generate
from babygpt.tokenizer import CharTokenizer
from babygpt.ui.models import shipped_checkpoints

from conftest import ROOT, cli_here, raw_call, variant_config

GPT = shipped_checkpoints()["gpt"]
TINY = build_model(variant_config("gpt", vocab_size=20, n_layer=1, n_head=2, n_embd=16, block_size=8))


def broken_checkpoint(tmp_path: Path, damage: str) -> Path:
    directory = tmp_path / f"gpt-{damage}"
    shutil.copytree(GPT, directory)
    if damage == "truncated weights":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "missing weights":
        (directory / "model.safetensors").unlink()
    elif damage == "config not JSON":
        (directory / "config.json").write_text("{not json")
    elif damage == "config from a newer version":
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    elif damage == "weights of another shape":
        other = tmp_path / "other"
        shutil.copytree(shipped_checkpoints()["llama"], other)
        shutil.copy(other / "model.safetensors", directory / "model.safetensors")
    return directory


def corpus(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind.replace(' ', '-')}.txt"
    contents = {"empty": b"", "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not UTF-8": "café".encode("latin-1") * 50,
                "one character": b"a" * 3}
    path.write_bytes(contents[kind])
    return path


# (surface, what is sent, a piece of the message), grouped by surface.
API = [
    ("Python", "load_checkpoint of a folder that does not exist", "is not a directory"),
    ("Python", "a checkpoint whose model.safetensors is truncated", "is not a readable safetensors file"),
    ("Python", "a checkpoint without model.safetensors", "model.safetensors is missing"),
    ("Python", "a checkpoint whose config.json is not JSON", "is not valid JSON"),
    ("Python", "a checkpoint from a newer BabyGPT (format_version 99)", "newer than this BabyGPT understands"),
    ("Python", "a checkpoint whose weights have another shape", "does not match the config"),
    ("Python", "generate from token ids outside the vocabulary (-1, 20)", "token ids must be whole numbers"),
    ("Python", "generate at temperature NaN", "temperature must be 0 (greedy) or positive"),
    ("Python", "generate at temperature inf", "temperature must be 0 (greedy) or positive"),
    ("Python", "generate with top_p 0", "top_p must be in (0, 1]"),
    ("Python", "generate with top_k -1", "top_k must be 0 (off) or a positive whole number"),
    ("Python", "generate 10⁹ new tokens", "max_new_tokens must be between 0 and"),
    ("Python", "encode an emoji with a character tokenizer that never saw it", "not in this model's vocabulary"),
    ("Python", "train on an empty corpus", "is empty"),
    ("Python", "train with an unknown preset", "unknown preset"),
    ("Python", "train with learning rate NaN", "learning_rate"),
    ("Python", "ablate an unknown knob (n_layers)", "unknown knob 'n_layers'"),
    ("Python", "ablate n_layer over 1,two", "n_layer=two: n_layer takes int values"),
    ("Python", "ablate 6 values (the cap is 5)", "an ablation compares 2 to 5 values, got 6"),
    ("Python", "ablate with 6 seeds per value (the cap is 5)", "seeds per setting must be a whole number from 1 to 5"),
    ("Python", "ablate a BPE vocabulary the corpus cannot fill", "the corpus fills only"),
]

CLI = [
    ("CLI", "sample a checkpoint folder that does not exist", "not a directory, nor a shipped model"),
    ("CLI", "sample a checkpoint whose weights are truncated", "is not a readable safetensors file"),
    ("CLI", "eval a checkpoint from a newer BabyGPT", "newer than this BabyGPT understands"),
    ("CLI", "train with n_embd 30 over 4 heads", "divisible"),
    ("CLI", "train on a corpus file that does not exist", "no such"),
    ("CLI", "train on a binary file", "is a binary file"),
    ("CLI", "train on a file that is not UTF-8", "not UTF-8"),
    ("CLI", "train on an empty file", "is empty"),
    ("CLI", "train for -1 iterations", "max_iters"),
    ("CLI", "train at learning rate nan", "learning_rate"),
    ("CLI", "sample at temperature inf", "temperature must be 0 (greedy) or positive"),
    ("CLI", "ablate a knob the family lacks (n_kv_head on gpt)", "unknown knob 'n_kv_head' for a gpt base"),
    ("CLI", "ablate with a budget of 0 seconds", "the time budget per run must be a positive number"),
]

APP = [
    ("app /compare", "an empty prompt", "prompt is empty"),
    ("app /compare", "an emoji prompt to a model that never saw it", "has never seen '🙂'"),
    ("app /compare", "a model name no one has", "no model named"),
    ("app /compare", "a model name with ../ in it", "no model named"),
    ("app /compare", "7 models at once (the cap is 6)", "compare at most 6 models"),
    ("app /train", "n_layer 13 (the cap is 12)", "Value 13 is greater than maximum value 12"),
    ("app /train", "batch size 0", "Value 0 is less than minimum value 1"),
    ("app /train", "an uploaded binary file", "is a binary file"),
    ("app /train", "an uploaded file that is not UTF-8", "not UTF-8"),
    ("app /train", "an uploaded empty file", "is empty"),
    ("app /train", "an uploaded .html file (only .txt is taken)", "Invalid file type"),
    ("app /train", "a preset no one has", "not in the list of choices"),
    ("app /train", "a tokenizer that does not exist", "not in the list of choices"),
    ("app /train", "a BPE vocabulary of 100 (the least is 260)", "Value 100 is less than minimum value 260"),
    ("app /train", "dropout 0.9 (the most is 0.5)", "Value 0.9 is greater than maximum value 0.5"),
    ("app /train", "a negative weight decay", "Value -0.1 is less than minimum value 0"),
    ("app /train", "an optimizer that does not exist", "not in the list of choices"),
    ("app /train", "Muon for the bigram (a table: no weight matrices)", "muon has no weight matrices to train"),
    ("app /finetune", "a base model no one has", "no model named 'nope'"),
    ("app /finetune", "LoRA alpha 0", "LoRA alpha must be positive"),
    ("app /describe", "n_layer 13 (the cap is 12)", "Value 13 is greater than maximum value 12"),
    ("app /preset_values", "a preset no one has", "not in the list of choices"),
    ("app /switch_mode", "a mode that does not exist", "not in the list of choices"),
    ("app /redraw", "an x axis that does not exist", "not in the list of choices"),
    ("app /recolour", "a colouring that does not exist", "not in the list of choices"),
    ("app /attention", "head 10⁹", "head must be a whole number from 0 to 1,000,000"),
    ("app /attention", "an empty text", "text is empty"),
    ("app /logit_lens", "a model name no one has", "no model named"),
    ("app /attention_history", "a model trained without snapshots (shipped gpt)", "no attention snapshots"),
    ("app /attention_replay", "step -1", "Value -1 is less than minimum value 0"),
    ("app /generated_text", "a request before any Compare in this session", "nothing generated yet"),
    ("app /quantize", "a model name no one has", "no model named"),
    ("app /stats", "a training budget of 0 tokens", "the training budget in tokens must be a whole number"),
    ("app /stats", "batch size 10⁹", "batch size must be a whole number from 1 to 4,096"),
    ("app /load", "the repo id ../etc", "is not a repo id"),
    ("app /download", "a model name no one has", "no model named"),
    ("app /inside", "an empty prompt to Inside", "the prompt is empty"),
    ("app /inside", "position 6 of a 6-token prompt", "position 6 is outside the prompt's 6 tokens"),
    ("app /inside", "layer 9 of a 4-layer model", "layer 9 is outside this model's 4 layers"),
    ("app /inside", "head 9 of a 4-head model", "head 9 is outside this model's 4 heads"),
    ("app /inside", "characters the model's vocabulary lacks", "not in this model's vocabulary"),
    ("app /ablate", "a knob no one has", "not in the list of choices"),
    ("app /ablate", "a value the family refuses (n_head 3 of n_embd 128)", "n_head=3:"),
    ("app /ablate", "6 seeds per value (the cap is 5)", "Value 6 is greater than maximum value 5"),
    ("app /ablate", "a budget of 61 s per run (the cap is 60)", "Value 61 is greater than maximum value 60"),
    ("app /ablate", "a corpus no one has", "not in the list of choices"),
    ("app /ablate", "a BPE vocabulary the corpus cannot fill (bpe-99999)", "the corpus fills only"),
    ("app /overlay", "13 models at once (the cap is 12)", "overlay at most 12 models at once"),
    ("app /overlay", "a model name with ../ in it", "no model named"),
]
# Not refused but answered, each in SECURITY.md's second table: (surface, what is sent, what the page says)
ANSWERED = [
    ("app /inside", "a prompt longer than the model's context", "these are its last 64 tokens"),
    ("app /inside", "a head chosen for a model without heads (lstm)", "has no heads to choose from"),
]
CASES = API + CLI + APP


def python_call(what: str, tmp_path: Path):
    if what.startswith("load_checkpoint of a folder"):
        return lambda: load_checkpoint(tmp_path / "nowhere")
    damage = {"is truncated": "truncated weights", "without model": "missing weights", "is not JSON": "config not JSON",
              "newer BabyGPT": "config from a newer version", "another shape": "weights of another shape"}
    for key, kind in damage.items():
        if key in what:
            return lambda: load_checkpoint(broken_checkpoint(tmp_path, kind))
    settings = {
        "outside the vocabulary": ([-1, 20], 5, {}), "temperature NaN": ([1], 5, {"temperature": math.nan}),
        "temperature inf": ([1], 5, {"temperature": math.inf}), "top_p 0": ([1], 5, {"top_p": 0.0}),
        "top_k -1": ([1], 5, {"top_k": -1}), "10⁹ new tokens": ([1], 10**9, {}),
    }
    for key, (prompt, new, extra) in settings.items():
        if key in what:
            return lambda: generate(TINY, prompt, new, **extra)
    if "emoji" in what:
        return lambda: CharTokenizer.train("hello world").encode("hi 🙂")
    if "empty corpus" in what:
        return lambda: new_run(str(corpus(tmp_path, "empty")), preset="gpt", out_dir=tmp_path / "run")
    if "unknown preset" in what:
        return lambda: new_run("shakespeare", preset="gpt-9000", out_dir=tmp_path / "run")
    if "learning rate NaN" in what:
        return lambda: new_run("shakespeare", preset="gpt", train={"learning_rate": math.nan}, out_dir=tmp_path / "run")
    ablation = {"unknown knob": ("n_layers", ["1", "2"], {}), "1,two": ("n_layer", ["1", "two"], {}),
                "6 values": ("n_layer", [str(n) for n in range(1, 7)], {}),
                "6 seeds": ("n_layer", ["1", "2"], {"seeds": 6}),
                "cannot fill": ("tokenizer", ["char", "bpe-5000"], {"corpus": str(tiny_corpus(tmp_path))})}
    for key, (knob, values, extra) in ablation.items():
        if key in what:
            return lambda: plan(AblationSpec(knob, values, **extra))
    raise KeyError(what)


def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("to be or not to be\n" * 50, encoding="utf-8")
    return path


def cli_arguments(what: str, tmp_path: Path) -> list[str]:
    train = ["train", "--preset", "gpt", "--max-iters", "2", "--out", str(tmp_path / "run")]
    table = {
        "sample a checkpoint folder that does not exist": ["sample", str(tmp_path / "nowhere")],
        "sample a checkpoint whose weights are truncated":
            ["sample", str(broken_checkpoint(tmp_path, "truncated weights"))],
        "eval a checkpoint from a newer BabyGPT":
            ["eval", str(broken_checkpoint(tmp_path, "config from a newer version"))],
        "train with n_embd 30 over 4 heads": [*train, "--n-embd", "30", "--n-head", "4"],
        "train on a corpus file that does not exist": [*train, "--data", str(tmp_path / "missing.txt")],
        "train on a binary file": [*train, "--data", str(corpus(tmp_path, "binary"))],
        "train on a file that is not UTF-8": [*train, "--data", str(corpus(tmp_path, "not UTF-8"))],
        "train on an empty file": [*train, "--data", str(corpus(tmp_path, "empty"))],
        "train for -1 iterations": [*train, "--max-iters", "-1"],
        "train at learning rate nan": [*train, "--learning-rate", "nan"],
        "sample at temperature inf": ["sample", str(GPT), "--temperature", "inf", "--max-new-tokens", "3"],
        "ablate a knob the family lacks (n_kv_head on gpt)": ["ablate", "--knob", "n_kv_head", "--values", "1,2"],
        "ablate with a budget of 0 seconds": ["ablate", "--knob", "n_layer", "--values", "1,2", "--max-seconds", "0"],
    }
    return table[what]


NAME_ONLY = {"app /logit_lens": ("gpt-9000", "Hi"), "app /quantize": ("gpt-9000",)}
LORA = dict(base="gpt", r=4, alpha=8, targets=["q", "v"], drop_unknown=True, batch_size=4, max_iters=5,
            learning_rate=3e-3, max_seconds=0, corpus="kjv", upload=None, x_axis="step")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


TRAINING = dict(preset="gpt", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=5,
                learning_rate=1e-3, max_seconds=0, corpus="shakespeare", upload=None, x_axis="step",
                tokenizer="char", bpe_vocab_size=512, seed=1337, dropout=0.0, weight_decay=0.1, warmup_iters=100,
                bf16=False, optimizer="adamw")


ABLATION = dict(preset="gpt", knob="n_layer", values="1,2", seeds=1, budget=5, corpus="shakespeare")


def app_call(c: Client, surface: str, what: str, tmp_path: Path):
    compare = lambda names, prompt: c.predict(names, prompt, 5, 1.0, 0, 1.0, 0, api_name="/compare")  # noqa: E731
    train = lambda **over: c.predict(*{**TRAINING, **over}.values(), api_name="/train")  # noqa: E731
    finetune = lambda **over: c.predict(*{**LORA, **over}.values(), api_name="/finetune")  # noqa: E731
    inside = lambda model, prompt, position=-1, layer=0, head=0: c.predict(  # noqa: E731
        model, prompt, position, layer, head, 1.0, 0, 1.0, 0, api_name="/inside")
    upload = lambda kind: train(corpus="upload a .txt file", upload=handle_file(str(corpus(tmp_path, kind))))  # noqa: E731
    ablate = lambda **over: c.predict(*{**ABLATION, **over}.values(), api_name="/ablate")  # noqa: E731
    table = {
        "a knob no one has": lambda: ablate(knob="n_layers"),
        "a value the family refuses (n_head 3 of n_embd 128)": lambda: ablate(knob="n_head", values="2,3"),
        "6 seeds per value (the cap is 5)": lambda: ablate(seeds=6),
        "a budget of 61 s per run (the cap is 60)": lambda: ablate(budget=61),
        "a corpus no one has": lambda: ablate(corpus="../etc/passwd"),
        "a BPE vocabulary the corpus cannot fill (bpe-99999)":
            lambda: ablate(knob="tokenizer", values="char,bpe-99999"),
        "13 models at once (the cap is 12)": lambda: c.predict(["gpt"] * 13, "step", 0.0, api_name="/overlay"),
        "an empty prompt": lambda: compare(["gpt"], ""),
        "an emoji prompt to a model that never saw it": lambda: compare(["gpt"], "Hi 🙂"),
        "a model name no one has": (lambda: compare(["gpt-9000"], "Hi")) if surface == "app /compare"
        else (lambda: c.predict("gpt-9000", api_name="/download")),
        "a model name with ../ in it": (lambda: compare(["../checkpoints/gpt"], "Hi")) if surface == "app /compare"
        else (lambda: c.predict(["../checkpoints/gpt"], "step", 0.0, api_name="/overlay")),
        "7 models at once (the cap is 6)": lambda: compare(["gpt"] * 7, "Hi"),
        "n_layer 13 (the cap is 12)": lambda: train(n_layer=13),
        "batch size 0": lambda: train(batch_size=0),
        "an uploaded binary file": lambda: upload("binary"),
        "an uploaded file that is not UTF-8": lambda: upload("not UTF-8"),
        "an uploaded empty file": lambda: upload("empty"),
        "head 10⁹": lambda: c.predict("gpt", "Hi", 0, 10**9, api_name="/attention"),
        "an empty text": lambda: c.predict("gpt", "", 0, 0, api_name="/attention"),
        "a training budget of 0 tokens": lambda: c.predict("gpt", None, 12, 0, api_name="/stats"),
        "batch size 10⁹": lambda: c.predict("gpt", None, 10**9, 1000, api_name="/stats"),
        "the repo id ../etc": lambda: c.predict("../etc", api_name="/load"),
        "an uploaded .html file (only .txt is taken)": lambda: train(
            corpus="upload a .txt file", upload=handle_file(str(write(tmp_path / "page.html", b"<script>1</script>")))),
        "a preset no one has": (lambda: train(preset="gpt-9000")) if surface == "app /train"
        else (lambda: c.predict("gpt-9000", api_name="/preset_values")),
        "a tokenizer that does not exist": lambda: train(tokenizer="words"),
        "a BPE vocabulary of 100 (the least is 260)": lambda: train(tokenizer="bpe", bpe_vocab_size=100),
        "dropout 0.9 (the most is 0.5)": lambda: train(dropout=0.9),
        "a negative weight decay": lambda: train(weight_decay=-0.1),
        "an optimizer that does not exist": lambda: train(optimizer="sgd"),
        "Muon for the bigram (a table: no weight matrices)": lambda: train(preset="bigram", optimizer="muon"),
        "a base model no one has": lambda: finetune(base="nope"),
        "LoRA alpha 0": lambda: finetune(alpha=0),
        "a mode that does not exist": lambda: c.predict("from memory", "gpt", api_name="/switch_mode"),
        "an x axis that does not exist": lambda: c.predict("minutes", api_name="/redraw"),
        "a colouring that does not exist": lambda: c.predict("rainbow", api_name="/recolour"),
        "a model trained without snapshots (shipped gpt)": lambda: c.predict("gpt", api_name="/attention_history"),
        "step -1": lambda: c.predict("gpt", -1, api_name="/attention_replay"),
        "a request before any Compare in this session": lambda: c.predict("gpt", api_name="/generated_text"),
        "an empty prompt to Inside": lambda: inside("gpt", ""),
        "position 6 of a 6-token prompt": lambda: inside("gpt", "ROMEO:", position=6),
        "layer 9 of a 4-layer model": lambda: inside("gpt", "ROMEO:", layer=9),
        "head 9 of a 4-head model": lambda: inside("gpt", "ROMEO:", head=9),
        "characters the model's vocabulary lacks": lambda: inside("gpt", "ROMEO 🙂"),
        "a prompt longer than the model's context": lambda: inside("gpt", "To be, or not to be. " * 10),
        "a head chosen for a model without heads (lstm)": lambda: inside("lstm", "ROMEO:", head=2),
    }
    if what == "n_layer 13 (the cap is 12)" and surface == "app /describe":
        return lambda: c.predict("from scratch", "gpt", 13, 4, 128, 64, 12, 2000, 1e-3, 0, "shakespeare", "gpt", 8, 16,
                                 ["q", "v"], api_name="/describe")
    if what == "a model name no one has" and surface in NAME_ONLY:
        return lambda: c.predict(*NAME_ONLY[surface], api_name="/" + surface.split("/")[1])
    return table[what]


@pytest.mark.parametrize("surface, what, message", API, ids=[c[1] for c in API])
def test_python_api(tmp_path, surface, what, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        python_call(what, tmp_path)()


@pytest.mark.parametrize("surface, what, message", CLI, ids=[c[1] for c in CLI])
def test_command_line(tmp_path, surface, what, message):
    """The command's own code in this process (conftest.cli_here); tests/test_cli.py runs real processes."""
    result = cli_here(*cli_arguments(what, tmp_path))
    assert result.returncode != 0
    assert message.lower() in result.stderr.lower(), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("surface, what, message", APP, ids=[c[1] for c in APP])
def test_app_endpoints(app_url, tmp_path, surface, what, message):
    c = Client(app_url, verbose=False, analytics_enabled=False)
    with pytest.raises(AppError, match=re.escape(message)):
        app_call(c, surface, what, tmp_path)()


@pytest.mark.parametrize("surface, what, message", ANSWERED, ids=[c[1] for c in ANSWERED])
def test_app_answers_what_it_does_not_refuse(app_url, tmp_path, surface, what, message):
    note, *_ = app_call(Client(app_url, verbose=False, analytics_enabled=False), surface, what, tmp_path)()
    assert message in note


def test_security_md_lists_exactly_these_cases():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (Python|CLI|app /\w+) \| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)
    assert [(s, w) for s, w, _ in rows] == [(s, w) for s, w, _ in CASES]
    assert all(m in shown for (_, _, m), (_, _, shown) in zip(CASES, rows))
    assert len(CASES) >= 30
    answered = re.findall(r"^\| (app /\w+) \(answered\) \| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)
    assert [(s, w) for s, w, _ in answered] == [(s, w) for s, w, _ in ANSWERED]


# Forms small enough that a call with an odd but allowed number still answers in a second or two.
RAW_FORMS = {"train": TRAINING, "finetune": LORA, "describe": {"max_iters": 5},
             "compare": {"names": ["gpt"], "max_new_tokens": 5}, "stats": {"budget_tokens": 1000}}


def test_nan_and_infinity_over_raw_http_get_a_message_from_every_number_of_every_endpoint(app_url):
    """gradio_client cannot send NaN or inf, but the JSON parser behind every endpoint reads the
    bare words NaN and Infinity. Each number any endpoint takes, sent as each of them, must be
    answered (refused with a message, or carried out) and never fail without one. The calls are one
    visitor's over one kept-alive connection: as a new visitor each, gradio first made its copy of
    the page for every one of them (about 0.1 s a call, most of the test's time)."""
    info = httpx.get(f"{app_url}gradio_api/info", timeout=30).json()["named_endpoints"]
    silent, tried = [], 0
    http = httpx.Client()  # one connection and one visitor for the hundreds of calls
    for endpoint, spec in info.items():
        api_name = endpoint.lstrip("/")
        names = [p["parameter_name"] for p in spec["parameters"]]
        numbers = [n for n, p in zip(names, spec["parameters"]) if p["python_type"]["type"] in ("int", "float")]
        values = {n: p.get("parameter_default") for n, p in zip(names, spec["parameters"])}
        values.update({k: v for k, v in RAW_FORMS.get(api_name, {}).items() if k in values})
        for number in numbers:
            for bad in ("NaN", "Infinity", "-Infinity"):
                body = json.dumps({"data": [{**values, number: "BAD"}[n] for n in names],
                                   "session_hash": "nan-and-infinity"}).replace('"BAD"', bad)
                event, data = raw_call(app_url, api_name, body, http)
                tried += 1
                if event == "error" and not (isinstance(data, dict) and data.get("error")):
                    silent.append(f"{endpoint} {number}={bad}")
    http.close()
    assert tried >= 60, f"only {tried} calls: did the endpoints change?"
    assert silent == [], f"failed without a message: {silent}"
    assert Client(app_url, verbose=False, analytics_enabled=False).predict(
        ["gpt"], "Hi", 5, 1.0, 0, 1.0, 0, api_name="/compare")[1]["gpt"], "and the app still answers"

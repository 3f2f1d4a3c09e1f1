"""The CLI as a user runs it: real ``python -m babygpt`` processes for the flows (train, sample,
eval, resume, finetune, export); the refusals and the help run ``babygpt.cli.main`` in this
process instead, the same code without a Python start-up per case."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from babygpt.models import FAMILIES
from babygpt.trainer import TrainConfig

from conftest import cli_here

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "5", "--eval-iters", "2", "--sample-tokens", "10"]


def babygpt(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "babygpt", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_help_documents_every_flag():
    text = cli_here("train", "--help").stdout
    names = {f.name for family in FAMILIES.values() for f in dataclasses.fields(family.config_class)} - {"vocab_size"}
    names |= {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        assert "--" + name.replace("_", "-") in text, name
    for flag in ("--preset", "--family", "--data", "--out", "--resume", "--tokenizer", "--max-seconds"):
        assert flag in text
    for command in ("sample", "eval"):
        text = cli_here(command, "--help").stdout
        assert "checkpoint" in text and "--device" in text
    sample_help = cli_here("sample", "--help").stdout
    for flag in ("--prompt", "--max-new-tokens", "--temperature", "--top-k", "--seed"):
        assert flag in sample_help


def test_train_sample_eval_resume(tmp_path):
    out = tmp_path / "run"
    result = babygpt("train", "--preset", "gpt", *TINY, "--max-iters", "10", "--out", str(out))
    assert "best val loss" in result.stdout and "step 10: train" in result.stdout
    assert "tok/s" in result.stderr and "ETA" in result.stderr, "the progress bar shows speed and ETA"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10

    first = babygpt("sample", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3").stdout
    again = cli_here("sample", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3").stdout
    assert first == again and first.startswith("ROMEO:") and len(first) > 40

    result = cli_here("eval", str(out))
    assert "val loss" in result.stdout and "bits/char" in result.stdout
    loss = float(result.stdout.split("val loss ")[1].split()[0])
    bits = float(result.stdout.split("nats/token, ")[1].split()[0])
    assert bits == pytest.approx(loss / 0.6931471805599453, rel=1e-3), "char model: bits/char = loss / ln 2"

    assert cli_here("train", "--out", str(out), "--resume", "--max-iters", "15").returncode == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 15


def test_bpe_tokenizer_and_llama_family(tmp_path):
    out = tmp_path / "run"
    cli_here("train", "--family", "llama", "--n-kv-head", "1", *TINY, "--max-iters", "5", "--tokenizer", "bpe",
            "--bpe-vocab-size", "300", "--data", "kjv", "--out", str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["family"] == "llama" and config["model"]["vocab_size"] == 300
    assert config["tokenizer"] == "bpe"
    assert "bits/char" in cli_here("eval", str(out)).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-embd", "30", "--n-head", "4"], "divisible by n_head"),
        (["--learning-rate", "0"], "learning_rate must be positive"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "gpt", "--n-kv-head", "2"], "--n-kv-head does not apply to the gpt family"),
        (["--data", "/no/such/file.txt"], "no corpus named"),
        (["--block-size", "0"], "block_size must be at least 1"),
    ],
)
def test_bad_arguments_give_a_clear_error_and_no_traceback(tmp_path, args, message):
    result = cli_here("train", *args, "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists(), "nothing is written before the settings are checked"


def test_eval_reports_exact_match_accuracy_on_the_addition_task(tmp_path):
    out = tmp_path / "adder"
    cli_here("train", "--preset", "gpt", *TINY, "--max-iters", "5", "--data", "addition", "--out", str(out))
    line = cli_here("eval", str(out)).stdout.splitlines()[-1]
    assert line.startswith("exact-match accuracy ") and line.endswith("on 500 val problems (greedy decoding)")
    assert 0.0 <= float(line.split()[2].rstrip("%")) <= 100.0


def test_sample_from_a_missing_checkpoint_is_a_clear_error(tmp_path):
    result = cli_here("sample", str(tmp_path / "none"))
    assert result.returncode == 2 and "not a directory" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert cli_here("train", "--preset", "gpt", *TINY, "--max-iters", "3", "--out", str(out)).returncode == 0
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "--max-new-tokens", "-5"], "max_new_tokens must be between 0 and 100,000"),
        (["sample", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["sample", "--stop", ""], "stop strings must not be empty"),
        (["sample", "--temperature", "-1"], "temperature must be 0 (greedy) or positive"),
        (["sample", "--temperature", "nan"], "temperature must be 0 (greedy) or positive"),
        (["sample", "--top-k", "-1"], "top_k must be 0 (off) or a positive whole number"),
        (["sample", "--device", "tpu"], "device must be auto, cpu, cuda, cuda:N or mps"),
        (["sample", "--prompt", "Zürich 🙂"], "not in this model's vocabulary"),
        (["eval", "--batch-size", "0"], "batch_size must be at least 1"),
        (["eval", "--data", "/no/such.txt"], "no corpus named"),
    ],
)
def test_bad_sample_and_eval_arguments_give_a_clear_error(trained, args, message):
    command, *rest = args
    result = cli_here(command, str(trained), *rest)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_tiny_temperature_is_nearly_greedy_not_an_error(trained):
    tiny = cli_here("sample", str(trained), "--temperature", "1e-40", "--max-new-tokens", "20").stdout
    greedy = cli_here("sample", str(trained), "--temperature", "0", "--max-new-tokens", "20").stdout
    assert tiny == greedy


def test_sample_streams_the_same_text_without_the_cache_and_stops_at_a_stop_string(trained):
    args = ("sample", str(trained), "--prompt", "ROMEO:", "--max-new-tokens", "80", "--top-p", "0.9", "--seed", "4")
    cached = cli_here(*args).stdout
    assert cli_here(*args, "--no-cache").stdout == cached
    new_text = cached[len("ROMEO:"):].rstrip("\n")
    stop = new_text[5:7]
    stopped = cli_here(*args, "--stop", stop).stdout
    assert stopped == "ROMEO:" + new_text[: new_text.index(stop) + 2] + "\n"


def test_sample_with_bf16_weights_writes_text_of_the_same_length(trained):
    args = ("sample", str(trained), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0")
    full, half = cli_here(*args), cli_here(*args, "--bf16-weights")
    assert half.returncode == 0, half.stderr
    assert half.stdout.startswith("ROMEO:") and len(half.stdout) == len(full.stdout), "one character per token"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "--preset", "llama"], "drop --preset"),
        (["--resume", "--n-layer", "3"], "drop --n-layer"),
        (["--learning-rate", "1e6", "--max-iters", "50"], "loss became"),
    ],
)
def test_resume_conflicts_and_diverging_runs_give_a_clear_error(trained, args, message, tmp_path):
    out = trained if "--resume" in args else tmp_path / "diverge"
    result = cli_here("train", *([] if "--resume" in args else TINY), *args, "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_finetune_help_documents_its_flags():
    text = cli_here("finetune", "--help").stdout
    for flag in ("--base", "--data", "--out", "--resume", "--full", "--lora-r", "--lora-alpha", "--lora-dropout",
                 "--lora-targets", "--drop-unknown", "--max-iters", "--learning-rate", "--eval-at-start"):
        assert flag in text, flag


def test_finetune_lora_then_sample_eval_and_resume_the_adapter(trained, tmp_path):
    out = tmp_path / "adapter"
    result = cli_here("finetune", "--base", str(trained), "--data", "kjv", "--drop-unknown", "--lora-r", "4",
                     "--lora-targets", "q,k,v,o", "--batch-size", "4", "--max-iters", "6", "--eval-interval", "3",
                     "--eval-iters", "2", "--out", str(out))
    assert "dropped 44,666 characters of kjv" in result.stdout
    assert "step 0: " in result.stdout and "val on shakespeare" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "metrics.json", "training_state.json",
        "training_state.safetensors"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["lora"]["r"] == 4 and config["lora"]["targets"] == ["q", "k", "v", "o"]
    assert config["base"] == str(trained.resolve()) and len(config["base_sha256"]) == 64
    sampled = cli_here("sample", str(out), "--prompt", "And", "--max-new-tokens", "20", "--seed", "1").stdout
    assert sampled.startswith("And") and len(sampled) > 20
    assert "of kjv" in cli_here("eval", str(out)).stdout  # evaluated on its own corpus, dropped characters too
    assert cli_here("finetune", "--out", str(out), "--resume", "--max-iters", "8").returncode == 0
    assert json.loads((out / "training_state.json").read_text())["step"] == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "kjv"], "the corpus has 12 character(s) that the model's vocabulary lacks"),
        (["--data", "kjv", "--drop-unknown", "--lora-targets", "q,z"], "LoRA targets must be some of"),
        (["--data", "kjv", "--full", "--lora-r", "4"], "--full trains every weight; drop --lora-r"),
        (["--data", "kjv", "--drop-unknown", "--lora-r", "0"], "LoRA rank r must be a positive whole number"),
        (["--resume", "--lora-r", "4"], "--resume keeps the base and adapter settings"),
        ([], "--base and --data are required"),
    ],
)
def test_bad_finetune_arguments_give_a_clear_error(trained, args, message, tmp_path):
    base = [] if "--resume" in args or not args else ["--base", str(trained)]
    result = cli_here("finetune", *base, *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_export_writes_a_transformers_directory_and_refuses_what_it_cannot(tmp_path):
    result = cli_here("export", "llama", "--out", str(tmp_path / "hf"))
    assert "AutoModelForCausalLM.from_pretrained" in result.stdout
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    refused = cli_here("export", "gpt-time-weighted", "--out", str(tmp_path / "tw"))
    assert refused.returncode == 2 and "GPT-2 has no equivalent of time_weighting" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "tw").exists()
    result = cli_here("export", "gpt-kjv-lora", "--peft", "--out", str(tmp_path / "peft"))
    assert "PeftModel.from_pretrained" in result.stdout
    assert json.loads((tmp_path / "peft" / "adapter" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert (tmp_path / "peft" / "base" / "model.safetensors").exists()

"""The benchmarks still run. Their figures are read by people, never asserted here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.reference_models import models_at
from bench.run import main as bench_main
from bench.train_speed import NATIVE_BF16

ROOT = Path(__file__).resolve().parent.parent


def test_train_speed_benchmark_runs_and_reports_its_goals(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.train_speed", "--shapes", "small", "--steps", "1", "--repeats", "1",
         "--warmup", "1", "--json", str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    expected = ["| small | fp32 | babygpt |", "| small | fp32 | hf-gelu |", "## Goals", "MFU",
                "within 2 % of the model code before hook points"]
    if NATIVE_BF16:
        expected.append("| small | bf16 | hf-gelu |")
    else:
        expected.append("bf16 rows left out: this CPU has no bf16 instructions")
    for text in expected:
        assert text in result.stdout, text
    if models_at() is not None:
        assert "| small | fp32 | babygpt-before |" in result.stdout
    assert (tmp_path / "out.json").stat().st_size > 0


def test_generate_speed_benchmark_runs_and_reports_its_goals(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.generate_speed", "--shapes", "small", "--repeats", "1", "--compare-tokens", "80",
         "--json", str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    expected = ["| small | babygpt-cached | fp32 |", "| small | babygpt-cached-fastest | fp32 |",
                "| small | hf-generate | fp32 |", "| gpt | 64 |", "## Goals"]
    expected.append("| small | hf-generate | bf16 |" if NATIVE_BF16 else "bf16 rows left out")
    for text in expected:
        assert text in result.stdout, text
    report = json.loads((tmp_path / "out.json").read_text())
    cached = next(row for row in report["rows"]
                  if (row["implementation"], row["precision"]) == ("babygpt-cached", "fp32"))
    # one round: the paired speed-up is that round's ratio of times, the inverse ratio of tokens/s
    hf = next(row for row in report["rows"] if (row["implementation"], row["precision"]) == ("hf-generate", "fp32"))
    assert cached["vs_hf_fp32"] == pytest.approx(cached["tokens_per_s"] / hf["tokens_per_s"])
    # the roofline: a step reads every weight at least once, so it cannot beat reading them
    assert cached["roofline_ratio"] > 1 and cached["streaming_ms"] > 0
    assert "| small | 3.2 MB |" in result.stdout and "roofline ratio" in result.stdout
    assert any(goal["goal"].startswith("fp32 cached step vs streaming") for goal in report["goals"])
    # the step's products alone read every weight too, and are part of the step
    assert cached["products_ms"] > 0 and cached["products_ratio"] > 0 and cached["products_ms"] < cached["ms_per_token"]
    # Compare's five models in one process: past block_size the library re-encodes the window at
    # every step (the first encoding, then one per step whose window has moved); the context shift
    # (reference) once per half window
    compare = report["compare"]
    assert compare["models"] == ["gpt", "gpt-time-weighted", "gpt-low-rank", "llama", "gpt-kjv-lora"]
    assert compare["new_tokens"] == 80 and "| Compare in one process:" in result.stdout
    moved = {name: max(0, compare["prompt_tokens"][name] + 80 - 1 - block)
             for name, block in compare["block_sizes"].items()}
    assert compare["encodes"]["exact"] == sum(1 + n for n in moved.values())
    most_shifts = sum(1 + -(-n // (compare["block_sizes"][name] // 2)) for name, n in moved.items())
    assert 0 < compare["encodes"]["context shift"] <= most_shifts < compare["encodes"]["exact"]
    assert set(compare["seconds"]) == {"side_by_side, 1 token a turn", "forward passes alone",
                                       f"side_by_side, {compare['tokens_per_turn']} tokens a turn (the Compare tab)",
                                       "forward passes alone, context shift (reference)"}
    assert all(seconds > 0 for seconds in compare["seconds"].values())


def test_speedrun_benchmark_runs_its_recipes(tmp_path):
    """On the repository's own Shakespeare: a clone has no ../shared (the benchmark's default text)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.speedrun", "--recipes", "reference,speedrun", "--budget", "1", "--seeds", "2",
         "--data", "data/shakespeare.txt", "--json", str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| nanoGPT's CPU recipe (the gpt preset), its own 2,000 iterations |" in result.stdout
    from babygpt.machine import cpu_model

    assert "(the speedrun-cpu preset)" in result.stdout and f"CPU speedrun on {cpu_model()}," in result.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["budget"] == 1 and [r["name"] for r in report["results"]] == ["reference", "speedrun"]
    assert report["data"] == "data/shakespeare.txt" and "on shakespeare.txt" in result.stdout
    runs = [run for r in report["results"] for run in r["runs"]]
    assert len(runs) == 4 and all(run["seconds"] < 30 and run["val_loss"] > 0 for run in runs)
    assert [run["overrides"]["seed"] for run in runs] == [1337, 1338, 1337, 1338]
    assert report["goals"][-1]["threshold"] == 1.55
    # a --budget check caps every run, and the winning recipe's schedule follows that clock
    assert runs[-1]["model"] == {} and report["results"][-1]["label"].endswith("(the speedrun-cpu preset)")


def test_app_benchmark_starts_the_app_and_reports_its_goals(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.app_speed", "--quick", "--train-seconds", "2", "--compare-tokens", "20", "--json",
         str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"},
    )
    assert result.returncode == 0, result.stderr
    for text in ("| start: `python app.py` until the page answers |", "| Compare, 5 models x 20 tokens |",
                 "| Compare, 5 models x 20 tokens, after a Hub push |",
                 "attention heatmaps, llama", "| Inside, the whole walk, llama |",
                 "| Inside, a temperature change through gradio_client |",
                 "| Inside, a temperature change in chromium, until painted |", "## Goals"):
        assert text in result.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert [g["goal"] for g in report["goals"]][:2] == ["app start until the page answers",
                                                        "Compare, 5 shipped models x 20 tokens"]
    # chromium is there (the README's test command installs it), so the goal is held to the browser's figure
    assert {"Inside, the whole walk, slowest shipped model", "Inside, a temperature change (in chromium)"} <= {
        g["goal"] for g in report["goals"]}
    assert len(report["result"]["browser_slider_seconds"]) == 3
    assert "Compare after a Hub push, against before it in the same app" in {g["goal"] for g in report["goals"]}
    assert report["result"]["push_seconds"] > 0 and len(report["result"]["compare_after_push_seconds"]) == 1
    assert report["result"]["idle_rss"] < report["result"]["peak_rss_training"]
    assert report["result"]["app_training_tokens_per_s"] > 0 and report["result"]["cli_training_tokens_per_s"] > 0


def test_the_ablation_benchmark_runs_an_ablation_through_the_apps_queue(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.ablation_speed", "--preset", "bigram", "--knob", "learning_rate", "--values",
         "0.1,0.01", "--seconds", "1", "--json", str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "| learning_rate=0.1 |" in result.stdout and "queue and bookkeeping" in result.stdout
    report = json.loads((tmp_path / "out.json").read_text())
    assert [g["goal"] for g in report["goals"]] == ["2 values × 1 s finish within 17 s of wall time",
                                                    "queue and bookkeeping under 15 s in all"]
    assert report["wall_seconds"] == pytest.approx(report["training_seconds"] + report["bookkeeping_seconds"])
    assert len(report["runs"]) == 2


def test_one_entry_point_runs_the_benchmarks_and_writes_one_report(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "ddp_speed", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "- cpu: " in text and "- torch: " in text  # the machine it was measured on
    assert "| ddp_speed | torchrun 2 processes, gpt: measured" in text
    assert "## ddp_speed" in text and "| gpt | torchrun 2 processes x 1 thread | 1 |" in text
    assert text.split("\n## ", 1)[0] in result.stdout  # the summary is also printed


def test_the_entry_point_refuses_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as refused:
        bench_main(["--only", "nope"])
    assert refused.value.code == 2 and "unknown benchmark" in capsys.readouterr().err

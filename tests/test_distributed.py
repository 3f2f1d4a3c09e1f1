"""Data parallel: torchrun with 2 CPU processes (gloo) follows the single-process curve."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["-m", "babygpt", "train", "--preset", "gpt", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
        "--block-size", "32", "--batch-size", "8", "--max-iters", "12", "--eval-interval", "6", "--eval-iters", "2",
        "--sample-tokens", "0", "--threads", "1"]


def run(command, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_same_curve(run_a, run_b, tolerance):
    a = json.loads((run_a / "metrics.json").read_text())["history"]
    b = json.loads((run_b / "metrics.json").read_text())["history"]
    assert [h["step"] for h in a] == [h["step"] for h in b] == [6, 12]
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=tolerance)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=tolerance)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The run every test here compares with (or fine-tunes): ARGS in one process."""
    out = tmp_path_factory.mktemp("one-process") / "run"
    run([sys.executable, *ARGS, "--out", str(out)], out.parent)
    return out


def test_two_process_ddp_matches_one_process(tmp_path, one_process):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([*torchrun, *ARGS, "--out", str(tmp_path / "ddp")], tmp_path)
    assert "2 processes" in result.stdout
    assert_same_curve(tmp_path / "ddp", one_process, tolerance=1e-4)


def test_two_process_ddp_with_dropout_resumes_exactly(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    schedule = ["--dropout", "0.2", "--lr-decay-iters", "12"]
    run([*torchrun, *ARGS, *schedule, "--out", str(tmp_path / "whole")], tmp_path)
    run([*torchrun, *ARGS, *schedule, "--max-iters", "6", "--out", str(tmp_path / "split")], tmp_path)
    run([*torchrun, "-m", "babygpt", "train", "--resume", "--max-iters", "12", "--out", str(tmp_path / "split")],
        tmp_path)
    assert_same_curve(tmp_path / "whole", tmp_path / "split", tolerance=1e-5)


def test_a_lora_finetune_under_torchrun_follows_the_single_process_curve(tmp_path, one_process):
    finetune = ["-m", "babygpt", "finetune", "--base", str(one_process), "--data", "kjv", "--drop-unknown",
                "--lora-r", "4", "--batch-size", "8", "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "2",
                "--threads", "1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([*torchrun, *finetune, "--out", str(tmp_path / "ddp")], tmp_path)
    assert "2 processes" in result.stdout and result.stdout.count("dropped") == 1  # rank 0 alone reports
    run([sys.executable, *finetune, "--out", str(tmp_path / "single")], tmp_path)
    ddp, single = (json.loads((tmp_path / name / "metrics.json").read_text())["history"] for name in ("ddp", "single"))
    assert [h["step"] for h in ddp] == [h["step"] for h in single] == [0, 3, 6]
    for a, b in zip(ddp, single):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], abs=1e-4)
        assert a["other_val_loss"] == pytest.approx(b["other_val_loss"], abs=1e-4)  # the forgetting curve too
    files = [sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("ddp", "single")]
    assert files[0] == files[1]

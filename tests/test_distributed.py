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


def test_two_process_ddp_matches_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([*torchrun, *ARGS, "--out", str(tmp_path / "ddp")], tmp_path)
    assert "2 processes" in result.stdout
    run([sys.executable, *ARGS, "--out", str(tmp_path / "single")], tmp_path)
    assert_same_curve(tmp_path / "ddp", tmp_path / "single", tolerance=1e-4)


def test_two_process_ddp_with_dropout_resumes_exactly(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    schedule = ["--dropout", "0.2", "--lr-decay-iters", "12"]
    run([*torchrun, *ARGS, *schedule, "--out", str(tmp_path / "whole")], tmp_path)
    run([*torchrun, *ARGS, *schedule, "--max-iters", "6", "--out", str(tmp_path / "split")], tmp_path)
    run([*torchrun, "-m", "babygpt", "train", "--resume", "--max-iters", "12", "--out", str(tmp_path / "split")], tmp_path)
    assert_same_curve(tmp_path / "whole", tmp_path / "split", tolerance=1e-5)

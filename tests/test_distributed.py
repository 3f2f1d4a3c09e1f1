"""Data parallel: torchrun with 2 CPU processes (gloo) follows the single-process curve."""

import json
import os
import shutil
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


def test_two_process_ddp_matches_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([*torchrun, *ARGS, "--out", str(tmp_path / "ddp")], tmp_path)
    assert "2 processes" in result.stdout
    run([sys.executable, *ARGS, "--out", str(tmp_path / "single")], tmp_path)
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["history"]
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())["history"]
    assert [h["step"] for h in ddp] == [h["step"] for h in single] == [6, 12]
    for a, b in zip(ddp, single):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)

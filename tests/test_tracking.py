"""--tracker trackio: every training event logged, offline, into a folder of the test's own."""

import importlib.util
import json
import os
import subprocess
import sys

from conftest import ROOT, cli_here

READ_LOGS = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
print(json.dumps(SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])))
"""
TINY = ["--preset", "gpt", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--batch-size",
        "4", "--max-iters", "30", "--eval-interval", "10", "--sample-tokens", "0"]


def test_the_logged_metrics_equal_the_runs_history(tmp_path):
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "babygpt", "train", *TINY, "--out", str(out), "--tracker", "trackio",
                           "--tracker-project", "tracked"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    logs = json.loads(subprocess.run([sys.executable, "-c", READ_LOGS, "tracked", "run"], env=env, capture_output=True,
                                     text=True, timeout=120, check=True).stdout)
    history = json.loads((out / "metrics.json").read_text())["history"]
    evaluations = [(log["step"], log["eval/train_loss"], log["eval/val_loss"])
                   for log in logs if "eval/val_loss" in log]
    assert evaluations == [(h["step"], h["train_loss"], h["val_loss"]) for h in history]
    steps = [log for log in logs if "train/step_loss" in log]
    assert [log["step"] for log in steps] == list(range(1, 31)), "every optimizer step"
    assert steps[-1]["tokens_seen"] == 30 * 4 * 16 and all(log["speed/tokens_per_sec"] > 0 for log in steps)


def test_without_trackio_installed_the_flag_says_how_to_install_it(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    missing = lambda name, *rest: None if name == "trackio" else find_spec(name, *rest)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    refused = cli_here("train", *TINY, "--out", tmp_path / "never", "--tracker", "trackio")
    assert refused.returncode == 2 and "pip install trackio==0.43.0" in refused.stderr
    assert not (tmp_path / "never").exists(), "refused before anything was written"

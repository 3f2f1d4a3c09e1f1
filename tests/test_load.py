"""Many visitors at once, against the app on 127.0.0.1 (a small run of bench/load_test.py)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_concurrent_sessions_all_complete_stay_apart_and_their_files_go_when_idle(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.load_test", "--sessions", "4", "--trainers", "2", "--requests", "2",
         "--idle-seconds", "6", "--compare-tokens", "20", "--train-steps", "20", "--json", str(tmp_path / "load.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["compare"]["n"] == 8 and report["train"]["n"] == 2
    assert report["isolation_failures"] == []
    assert report["session_folders"] == 6 and report["session_folders_after_idle"] == 1
    assert report["goals"][1]["goal"] == "Compare latency under that load (2 models x 20 tokens)"
    assert report["rss"]["peak_during"] < 2 * 1024**3

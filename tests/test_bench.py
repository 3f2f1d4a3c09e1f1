"""The benchmarks still run. Their figures are read by people, never asserted here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_speed_benchmark_runs_and_reports_its_goals(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/train_speed.py", "--shapes", "small", "--steps", "1", "--repeats", "1",
         "--warmup", "1", "--json", str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for text in ("| small | fp32 | babygpt |", "| small | bf16 | hf-gelu |", "## Goals", "MFU"):
        assert text in result.stdout
    assert (tmp_path / "out.json").stat().st_size > 0


def test_generate_speed_benchmark_runs_and_reports_its_goals(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/generate_speed.py", "--shapes", "small", "--repeats", "1", "--json",
         str(tmp_path / "out.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for text in ("| small | babygpt-cached | fp32 |", "| small | hf-generate | bf16 |", "| gpt | 64 |", "## Goals"):
        assert text in result.stdout
    assert (tmp_path / "out.json").stat().st_size > 0

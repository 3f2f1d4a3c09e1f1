"""Faults: a training run killed outright leaves a checkpoint that loads and resumes."""

import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest

from babygpt.checkpoint import load_checkpoint

from conftest import ROOT, cli_here

TINY = ["--preset", "gpt", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-interval", "3", "--eval-iters", "1", "--sample-tokens", "0", "--threads", "1"]


def babygpt(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "babygpt", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("attempt", range(3))
def test_kill_9_at_a_random_step_leaves_a_checkpoint_that_loads_and_resumes(tmp_path, attempt):
    delay = random.Random().uniform(0.0, 1.5)  # after the first save: mid-step, mid-eval or mid-write
    out = tmp_path / "run"
    run = babygpt("train", *TINY, "--max-iters", "100000", "--out", str(out))
    deadline = time.monotonic() + 60
    while not (out / "training_state.json").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.02)
    time.sleep(delay)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()

    step = json.loads((out / "training_state.json").read_text())["step"]
    assert step > 0, f"killed {delay:.2f} s after the first save"
    load_checkpoint(out)  # every file is whole: the last save, or the one before it
    (out / ".model.safetensors.0123abcd.tmp").write_bytes(b"half a file")  # as a kill mid-write leaves
    resumed = cli_here("train", "--resume", "--max-iters", str(step + 6), "--out", str(out))  # here: no kill to come
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "training_state.json").read_text())["step"] == step + 6
    assert not list(out.glob(".*.tmp"))  # a write the kill cut short is cleared away on resume
    assert json.loads((out / "metrics.json").read_text())["history"][-1]["step"] >= step
    load_checkpoint(out)


def file_hashes(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_a_save_that_runs_out_of_room_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes every write past 256 bytes fail with EFBIG, as a
    full disk fails with ENOSPC, and needs no privileges."""
    out = tmp_path / "run"

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))

    assert cli_here("train", *TINY, "--max-iters", "6", "--out", str(out)).returncode == 0
    before = file_hashes(out)
    resumed = babygpt("train", "--resume", "--max-iters", "12", "--out", str(out), preexec_fn=limit_writes)
    status, stderr = resumed.wait(timeout=120), resumed.stderr.read()
    assert status != 0 and "Traceback" not in stderr
    assert "could not save" in stderr and "File too large" in stderr and "is intact" in stderr
    assert file_hashes(out) == before
    load_checkpoint(out)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    """A real full file system: a 2 MB tmpfs, filled once the first checkpoint is on it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        out = disk / "run"
        assert cli_here("train", *TINY, "--max-iters", "6", "--out", str(out)).returncode == 0
        before = file_hashes(out)
        with open(disk / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        resumed = cli_here("train", "--resume", "--max-iters", "12", "--out", str(out))
        status, stderr = resumed.returncode, resumed.stderr
        assert status != 0 and "Traceback" not in stderr
        assert "No space left on device" in stderr and "is intact" in stderr
        assert file_hashes(out) == before
        load_checkpoint(out)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)

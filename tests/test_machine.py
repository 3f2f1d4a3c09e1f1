"""The machine's matmul peak (measured once, then cached) and the MFU the trainer reports against it."""

import json
import threading
import time

import pytest
import torch

from babygpt import machine
from babygpt.runs import new_run
from babygpt.stats import flops_per_token


def test_the_peak_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BABYGPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(machine, "_peaks", {})
    calls = []
    real = machine.measure_matmul_peak
    monkeypatch.setattr(machine, "measure_matmul_peak", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = machine.matmul_peak_flops("cpu")
    assert len(calls) == 1 and first > 1e9  # any CPU of this decade multiplies faster than 1 GFLOP/s
    cached = json.loads((tmp_path / "matmul_peak.json").read_text())
    assert list(cached.values()) == [first] and "cpu" in next(iter(cached))
    monkeypatch.setattr(machine, "_peaks", {})  # a new process: the file answers
    assert machine.matmul_peak_flops("cpu") == first and len(calls) == 1
    (tmp_path / "matmul_peak.json").write_text("not json")  # a damaged cache is measured again
    monkeypatch.setattr(machine, "_peaks", {})
    assert machine.matmul_peak_flops("cpu") > 1e9 and len(calls) == 2


def clock(monkeypatch, times):
    """time.perf_counter reads ``times`` on this thread; other threads (an app's, a client's) keep the real one."""
    here, real, times = threading.current_thread(), time.perf_counter, iter(times)

    def perf_counter():
        return next(times) if threading.current_thread() is here else real()

    monkeypatch.setattr(machine.time, "perf_counter", perf_counter)


def test_a_measured_peak_is_the_flops_of_a_timed_matmul(monkeypatch):
    clock(monkeypatch, [0.0, 1.0] + [10.0, 10.5] * 3)  # warm-up 1 s, then 0.5 s each
    assert machine.measure_matmul_peak(torch.device("cpu"), repeats=3) == pytest.approx(2 * 1024**3 / 0.5)


def test_a_slow_matmul_is_timed_fewer_times(monkeypatch):
    """bf16 on a CPU without bf16 instructions takes seconds a product: stop once max_seconds is spent."""
    clock(monkeypatch, [0.0, 1.5, 10.0, 11.0, 20.0, 20.9])  # warm-up 1.5 s, then 1 s and 0.9 s
    assert machine.measure_matmul_peak(torch.device("cpu"), repeats=10, max_seconds=2.0) == pytest.approx(
        2 * 1024**3 / 1.0)  # stopped after the first timed product: 2.5 s spent; the warm-up is not the peak


def test_step_events_carry_mfu_against_the_peak():
    trainer = new_run("shakespeare", preset="gpt", model={"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16},
                      train={"batch_size": 4, "max_iters": 5, "eval_interval": 5, "eval_iters": 1, "sample_tokens": 0})
    steps = [e for e in trainer.run() if e.kind == "step"]
    expected_flops = flops_per_token(trainer.model.config)["training"]
    assert trainer.peak_flops == machine.matmul_peak_flops("cpu")
    for event in steps:
        assert event.mfu == pytest.approx(event.tokens_per_sec * expected_flops / trainer.peak_flops)
        assert 0 < event.mfu < 1


def test_measuring_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    machine.measure_matmul_peak(torch.device("cpu"), repeats=1)
    assert torch.equal(torch.get_rng_state(), state)

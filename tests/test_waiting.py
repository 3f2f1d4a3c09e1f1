"""The trainer's waiting line: the estimate from the runs' own budgets, on a clock the test moves."""

import re

import pytest

from babygpt.waiting import Estimate, WaitingLine


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_wait_is_the_running_runs_budget_left_plus_every_budget_ahead():
    clock = Clock()
    line = WaitingLine(overhead=2.0, clock=clock)
    assert line.join("a", 60) == Estimate(0, 0.0, 0), "nobody ahead: no wait"
    line.start("a", 60)
    clock.now += 20
    assert line.join("b", 30).seconds == 60 + 2 - 20  # a: its budget and overhead, less what it has run
    assert line.join("c", 10) == Estimate(2, 42 + 32, 0)
    assert "2 trainings ahead" in line.estimate("c").words() and "1 min 14 s" in line.estimate("c").words()
    line.finish("a", ended_by_budget=False)
    line.start("b", 30)
    assert line.estimate("c") == Estimate(1, 32.0, 0)


def test_a_run_that_ends_by_its_budget_teaches_the_overhead():
    clock = Clock()
    line = WaitingLine(overhead=3.0, clock=clock)
    line.start("a", 10)
    clock.now += 15  # 5 s beyond its budget
    line.finish("a", ended_by_budget=True)
    assert line.overhead() == 5, "the first measurement replaces the guess"
    line.start("b", 10)
    clock.now += 2  # stopped early: says nothing about the overhead
    line.finish("b", ended_by_budget=False)
    assert line.overhead() == 5
    for key, beyond in (("c", 1), ("d", 1.5)):
        line.start(key, 10)
        clock.now += 10 + beyond
        line.finish(key, ended_by_budget=True)
    assert line.overhead() == 1.5, "the lower median of the last runs: one slow first run does not count for long"


def test_runs_of_the_same_settings_teach_their_own_overhead():
    clock = Clock()
    line = WaitingLine(overhead=3.0, clock=clock)
    for key, kind, beyond in (("a", "big", 9), ("b", "small", 1), ("c", "small", 1.2), ("d", "big", 8)):
        line.start(key, 10, kind)
        clock.now += 10 + beyond
        line.finish(key, ended_by_budget=True)
    assert line.overhead("small") == pytest.approx(1) and line.overhead("big") == pytest.approx(8)
    assert line.overhead("never seen") == pytest.approx(1.2), "a kind never measured: the lower median of all"
    line.start("e", 10, "big")
    assert line.join("f", 10, "small").seconds == pytest.approx(10 + 8), "the running run counts with its own kind"


def test_runs_without_a_budget_make_the_estimate_a_lower_bound():
    clock = Clock()
    line = WaitingLine(overhead=1.0, clock=clock)
    line.start("a", None)
    line.join("b", 5)
    estimate = line.join("c", 5)
    assert estimate == Estimate(2, 6.0, 1) and "at least 6 s" in estimate.words()


def test_joining_again_replaces_ones_place_and_leaving_frees_it():
    clock = Clock()
    line = WaitingLine(overhead=0.0, clock=clock)
    line.start("a", 10)
    line.join("b", 10)
    line.join("c", 10)
    assert line.join("b", 20).ahead == 2, "b joined again: now behind c"
    line.leave("c")
    assert line.estimate("b") == Estimate(1, 10.0, 0)


def test_a_run_that_stops_saying_it_is_alive_is_forgotten():
    """A handler dropped without being closed never says its run finished; the line must not keep
    it ahead of everyone for ever."""
    clock = Clock()
    line = WaitingLine(overhead=0.0, clock=clock)
    line.start("streaming", None)
    line.start("dropped", None)
    for _ in range(10):
        clock.now += 30
        line.still_running("streaming")
    assert line.join("next", 10) == Estimate(1, 0.0, 1), "only the run still streaming is ahead"


def test_a_place_taken_before_a_run_that_starts_and_still_unused_goes():
    """Trainings start first come, first served: when a later place starts, an earlier one that
    has not is not in gradio's queue (a client that only asked: the full suite's raw-HTTP test
    took dozens of places, and the wait told grew to 7 minutes for 4-s runs)."""
    clock = Clock()
    line = WaitingLine(overhead=0.0, clock=clock)
    for n in range(10):
        line.join(f"only asked {n}", 60)
    line.join("visitor", 4)
    clock.now += 1
    line.start("visitor", 4)
    assert line.join("next", 4) == Estimate(1, 4.0, 0), "only the visitor now running is ahead"


def test_a_place_taken_but_never_used_is_forgotten_once_overdue():
    """A client that only asks (or whose run fails its checks, or who left) must not lengthen
    everyone's wait for long: its place goes once it is well past the wait it was told."""
    clock = Clock()
    line = WaitingLine(overhead=0.0, clock=clock)
    line.start("running", 100)
    assert line.join("only asked", 10).seconds == 100
    clock.now += 1.5 * 100 + 29
    line.still_running("running")
    assert line.join("next", 10).ahead == 2, "not yet overdue"
    clock.now += 2
    assert line.estimate("next").ahead == 1, "overdue: forgotten"
    empty = WaitingLine(overhead=0.0, clock=clock)
    empty.join("gone", 10)
    clock.now += 31
    assert empty.join("new", 10).ahead == 0, "told no wait, gone after the grace"


def test_three_queued_trainings_are_told_their_wait_within_30_percent(app_url):
    """Through the app: one visitor trains, three press Start behind them. Each is told an estimate
    when pressing (the button's first event); the wait it measures is from then until its run
    starts. Every run has the same time budget and ends by it."""
    import threading
    import time

    from gradio_client import Client
    from test_app import TINY_TRAINING

    budget = 4
    settings = {**TINY_TRAINING, "max_iters": 20000, "max_seconds": budget, "batch_size": 8}
    # what the Start button sends first: the budget, and the settings the run's kind is named by
    kind = [settings[k] for k in ("preset", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "corpus")]

    def press(c: Client):
        note = c.predict(budget, *kind, api_name="/join_training_line")
        pressed = time.monotonic()
        job = c.submit(*settings.values(), api_name="/train")
        started = {}

        def watch():
            while not job.done():
                if "started" not in started and job.status().code.name in ("PROCESSING", "ITERATING"):
                    started["started"] = time.monotonic()
                time.sleep(0.02)
            started.setdefault("started", time.monotonic())

        watcher = threading.Thread(target=watch)
        watcher.start()
        while job.status().code.name in ("STARTING", "JOINING_QUEUE"):  # in the server's queue before the next
            time.sleep(0.02)
        return note, pressed, job, started, watcher

    clients = [Client(app_url, verbose=False, analytics_enabled=False) for _ in range(5)]
    for _ in range(2):  # runs by their budget first: the line learns what a run takes beyond it
        clients[0].predict(budget, *kind, api_name="/join_training_line")
        clients[0].predict(*settings.values(), api_name="/train")
    runs = [press(c) for c in clients[1:]]
    for *_, job, _, watcher in runs:
        job.result()
        watcher.join()
    seen = [(note, round(started["started"] - pressed, 2)) for note, pressed, _, started, _ in runs]
    assert runs[0][0] == "starting…", f"nobody ahead of the first: {seen}"
    for position, (note, pressed, _, started, _) in enumerate(runs[1:], start=1):
        assert f"{position} training" in note, seen
        estimate = float(re.search(r"about (?:(\d+) min )?(\d+) s", note).group(2))
        minutes = re.search(r"about (\d+) min", note)
        estimate += 60 * int(minutes.group(1)) if minutes else 0
        actual = started["started"] - pressed
        print(f"position {position}: estimated {estimate:.0f} s, waited {actual:.1f} s")
        assert abs(estimate - actual) <= 0.3 * actual, seen

"""The app's handlers run their torch work on one thread, whichever gradio thread calls them.

Why it matters (babygpt/ui/common.py): every thread that runs a parallel torch op keeps an OpenMP
pool, and two pools on a 2-core machine made a Compare twice as slow and training 30 % slower.
"""

import concurrent.futures
import contextvars
import os
import threading

import gradio as gr
import pytest
import torch

from babygpt.ui.common import friendly, friendly_io

CALLER = contextvars.ContextVar("caller")


def in_threads(fn, n=3):
    """Call ``fn`` from ``n`` fresh threads, one after another; their results."""
    results = []
    for i in range(n):
        thread = threading.Thread(target=lambda i=i: results.append(fn(i)))
        thread.start()
        thread.join()
    return results


def test_plain_handlers_called_from_many_threads_run_on_one_other_thread():
    @friendly
    def handler(i):
        torch.randn(300_000).mul_(2)  # big enough to run in parallel
        return threading.current_thread()

    threads = in_threads(handler)
    assert len(set(threads)) == 1 and threads[0] is not threading.current_thread()
    assert threads[0].name.startswith("babygpt-torch")
    assert handler(0) is threads[0]  # the test's own thread too


def test_generator_handlers_run_each_step_on_the_torch_thread_with_the_callers_context():
    @friendly
    def handler(n):
        for i in range(n):
            yield threading.current_thread(), CALLER.get(None), i

    def call(i):
        CALLER.set(f"caller {i}")  # gradio keeps the event's progress and request in context variables
        return list(handler(3))

    for i, steps in enumerate(in_threads(call)):
        assert [step[2] for step in steps] == [0, 1, 2]
        assert {step[1] for step in steps} == {f"caller {i}"}
        assert len({step[0] for step in steps}) == 1 and steps[0][0].name.startswith("babygpt-torch")


def test_closing_a_generator_handler_closes_the_handler_on_the_torch_thread():
    closed_on = []

    @friendly
    def handler():
        try:
            while True:
                yield 1
        finally:
            closed_on.append(threading.current_thread().name)

    steps = handler()
    assert next(steps) == 1
    steps.close()  # what gradio does to a cancelled event
    assert len(closed_on) == 1 and closed_on[0].startswith("babygpt-torch")


def test_user_errors_still_become_messages_and_io_handlers_stay_where_they_are_called():
    @friendly
    def plain():
        raise ValueError("the prompt is empty")

    @friendly
    def generator():
        yield 1
        raise ValueError("no such model")

    with pytest.raises(gr.Error, match="the prompt is empty"):
        plain()
    with pytest.raises(gr.Error, match="no such model"):
        list(generator())

    @friendly_io
    def upload():
        return threading.current_thread()

    assert upload() is threading.current_thread()


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="counts the process's threads in /proc; needs torch on more than one core")
def test_an_io_handler_leaves_no_openmp_pool_behind_on_its_thread_and_keeps_the_torch_threads_cores():
    """A Hub handler's torch work (a model card's samples) runs on gradio's thread, which lives on:
    on several cores it would keep an OpenMP worker there, and every Compare after it would be slower."""
    def parallel_work():
        torch.randn(300_000).mul_(2)  # big enough to run in parallel
        return torch.get_num_threads()

    @friendly
    def on_the_torch_thread():
        return parallel_work()

    cores = on_the_torch_thread()
    gradio_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # like gradio's, it stays alive
    gradio_thread.submit(lambda: None).result()
    try:
        started = os_threads()
        assert gradio_thread.submit(friendly_io(parallel_work)).result() == 1, "on one core"
        assert os_threads() == started, "no OpenMP worker stayed behind"
        assert gradio_thread.submit(torch.get_num_threads).result() == cores, "the thread's own setting is back"
        assert on_the_torch_thread() == cores >= 2, "the torch thread keeps its cores"
        # the hazard itself: the same work on that thread without friendly_io keeps a worker there
        gradio_thread.submit(parallel_work).result()
        assert os_threads() > started
    finally:
        gradio_thread.shutdown()

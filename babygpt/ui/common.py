"""What every tab shares: clear messages for bad input, and the visitor's session."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import inspect
import math
import threading

import gradio as gr
import torch

from .models import Session, can_be_a_base, has_attention, session_for

# The shipped model every tab shows first (a checkpoint's name, also the default preset's).
FIRST_MODEL = "gpt"

# Anything a user can cause raises ValueError in the library; show it, never a stack trace.
USER_ERRORS = (ValueError, FloatingPointError)

# Every handler's torch work runs on this one thread. libgomp gives each thread that runs a
# parallel torch op a pool of OpenMP threads of its own, for as long as that thread lives; once
# there are more such threads than cores it stops letting them spin between ops and wakes them
# for every op instead. Gradio runs handlers on whichever of its worker threads is free, so two
# handlers would leave two pools behind: a Compare then took twice as long and training ran 30 %
# slower (bench/app_speed.py). A generator handler hands over one step at a time, so visitors'
# generations still take turns. The torch thread computes with the threads torch chose as the
# process started (OMP_NUM_THREADS, else the cores), whatever another thread sets later.
TORCH_THREADS = torch.get_num_threads()
TORCH_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="babygpt-torch",
                                                     initializer=torch.set_num_threads, initargs=(TORCH_THREADS,))
_DONE = object()


def on_torch_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the torch thread, with the caller's context (gradio's progress
    and request live in context variables)."""
    if threading.current_thread().name.startswith("babygpt-torch"):
        return fn(*args, **kwargs)
    return TORCH_THREAD.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()


def on_one_core(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` where it is called, with its torch work on one core.

    A handler that mostly waits on the network still does some torch work (the samples of a pushed
    model's card, the checks of a download). With several cores that work would leave an OpenMP
    pool behind on gradio's thread (see ``TORCH_THREAD``): after one Hub push every Compare took
    twice as long, for as long as the app ran. On one core no pool is made. The thread's own setting
    comes back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def friendly(fn, torch_thread: bool = True):
    """Turn the library's ``ValueError`` into a ``gr.Error`` the page shows as a message, and run
    the handler on the torch thread (``torch_thread=False``: where gradio runs it, on one core)."""
    run = on_torch_thread if torch_thread else on_one_core
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            steps = fn(*args, **kwargs)  # runs nothing yet
            try:
                while (item := run(next, steps, _DONE)) is not _DONE:
                    yield item
            except USER_ERRORS as error:
                raise gr.Error(str(error)) from None
            finally:  # a cancelled event closes this generator: close the handler's too, where it runs
                run(steps.close)

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return run(fn, *args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None

    return plain


def friendly_io(fn):
    """``friendly`` for a handler that mostly waits on the network: a slow Hub must not hold up
    everyone's models on the torch thread."""
    return friendly(fn, torch_thread=False)


def whole_number(value, name: str, low: int, high: int) -> int:
    """A number from the page or from an API client, which may send anything (NaN, inf, 1e300, text).

    The forms' counts are plain ``gr.Number(step=1)``, not ``precision=0``: gradio's own rounding
    fails with no message on NaN and inf, before any handler could explain."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or int(value) != value or not low <= value <= high):
        raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}, got {value!r}")
    return int(value)


def session_key(request: gr.Request | None) -> str:
    # gradio_client and the browser both get a session hash; a direct call in a test may not.
    return getattr(request, "session_hash", None) or "local"


def session_of(request: gr.Request | None) -> Session:
    return session_for(session_key(request))


def first_of(choices: list[str]) -> str | None:
    """The model a tab opens on: the shipped ``FIRST_MODEL`` where it is there."""
    return FIRST_MODEL if FIRST_MODEL in choices else None


def model_choices(session: Session, attention_only: bool = False) -> list[str]:
    return [name for name, path in session.models().items() if not attention_only or has_attention(path)]


def base_choices(session: Session) -> list[str]:
    """The models this session could LoRA fine-tune."""
    return [name for name, path in session.models().items() if can_be_a_base(path)]


CSS_EXTRA = """
footer {visibility: hidden;}
"""

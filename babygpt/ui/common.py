"""What every tab shares: clear messages for bad input, and the visitor's session."""

from __future__ import annotations

import functools
import inspect

import gradio as gr

from .models import Session, can_be_a_base, has_attention, session_for

# Anything a user can cause raises ValueError in the library; show it, never a stack trace.
USER_ERRORS = (ValueError, FloatingPointError)


def friendly(fn):
    """Turn the library's ``ValueError`` into a ``gr.Error`` the page shows as a message."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as error:
                raise gr.Error(str(error)) from None

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None

    return plain


def session_of(request: gr.Request | None) -> Session:
    # gradio_client and the browser both get a session hash; a direct call in a test may not.
    return session_for(getattr(request, "session_hash", None) or "local")


def model_choices(session: Session, attention_only: bool = False) -> list[str]:
    return [name for name, path in session.models().items() if not attention_only or has_attention(path)]


def base_choices(session: Session) -> list[str]:
    """The models this session could LoRA fine-tune."""
    return [name for name, path in session.models().items() if can_be_a_base(path)]


CSS_EXTRA = """
footer {visibility: hidden;}
"""

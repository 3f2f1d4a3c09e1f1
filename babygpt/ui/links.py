"""Links that reproduce a run: the page's URL carries the Train form or an ablation's spec.

``?tab=train&preset=gpt&n_layer=2&seed=3`` opens the Train tab with that form filled in; the same
link and seed train the same model again on the same machine. Opening a link only fills forms:
nothing from it runs, and nothing from it reaches the file system (a corpus is a built-in name,
never a path). Every parameter is checked like the form's own field; one that is unknown,
malformed or out of range is left out, and a note on the page says which.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from urllib.parse import urlencode

import gradio as gr

from ..ablation import MAX_SEEDS, MAX_VALUES, knobs_for
from ..data import BUILTIN
from ..models import PRESETS, get_preset
from ..trainer import OPTIMIZERS

TABS = ("start", "train", "compare", "inside", "attention", "stats", "experiments", "tokenizers", "hub")
MAX_LINK_PARAMETERS = 40  # more than every field of both forms: a longer query is not one of ours
MAX_VALUE_LENGTH = 100


def whole(low: int, high: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        if not re.fullmatch(r"\d{1,10}", text) or not low <= int(text) <= high:
            raise ValueError(f"a whole number from {low:,} to {high:,}")
        return int(text)
    return check


def number(low: float, high: float) -> Callable[[str], float]:
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"a number from {low:g} to {high:g}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"a number from {low:g} to {high:g}")
        return value
    return check


def one_of(choices) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return text
    return check


def comma_list(text: str) -> str:
    value = r"[A-Za-z0-9_.+-]+"
    if not re.fullmatch(rf"{value}(,{value}){{0,{MAX_VALUES - 1}}}", text):
        raise ValueError(f"up to {MAX_VALUES} comma-separated values of letters, digits and . _ + -")
    return text


def train_fields(limits: dict) -> dict[str, Callable[[str], object]]:
    """The Train form's fields a link may set, each with its check (``limits``: the form's caps)."""
    fields = {name: whole(1, limits[name]) for name in
              ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters")}
    fields.update(learning_rate=number(1e-6, 1.0), max_seconds=number(0, 3600), corpus=one_of(list(BUILTIN)),
                  preset=one_of(list(PRESETS)), tokenizer=one_of(["char", "bpe"]),
                  bpe_vocab_size=whole(260, limits["bpe_vocab_size"]), seed=whole(0, limits["seed"]),
                  dropout=number(0, 0.5), weight_decay=number(0, 10), warmup_iters=whole(0, limits["warmup_iters"]),
                  optimizer=one_of(list(OPTIMIZERS)))
    return fields


# The ablation's fields, named apart from the Train form's where both have one.
ABLATION_FIELDS = {"ablate_preset": one_of(list(PRESETS)), "knob": str, "values": comma_list,
                   "seeds": whole(1, MAX_SEEDS), "budget": number(1, 60), "ablate_corpus": one_of(list(BUILTIN))}


def read_link(query: dict, limits: dict) -> tuple[dict, list[str]]:
    """(the checked values by field, a note per parameter left out). ``query``: the page URL's
    parameters, as ``request.query_params`` gives them."""
    fields = {"tab": one_of(TABS), **train_fields(limits), **ABLATION_FIELDS}
    values, notes = {}, []
    items = list(query.items())
    if len(items) > MAX_LINK_PARAMETERS:
        return {}, [f"the link has {len(items)} parameters (at most {MAX_LINK_PARAMETERS}): none was used"]
    for key, text in items:
        shown = ascii(str(key)[:40])
        if key not in fields:
            notes.append(f"{shown} is not a setting a link can fill in")
            continue
        text = str(text)
        if len(text) > MAX_VALUE_LENGTH:
            notes.append(f"{shown} is longer than {MAX_VALUE_LENGTH} characters")
            continue
        try:
            values[key] = fields[key](text)
        except ValueError as error:
            notes.append(f"{shown}={ascii(text[:40])} is not {error}")
    if "knob" in values:
        knobs = knobs_for(get_preset(values.get("ablate_preset", "gpt"))[0])
        if values["knob"] not in knobs:
            notes.append(f"knob={ascii(values.pop('knob')[:40])} is not a knob of that preset")
    return values, notes


def link_query(values: dict) -> str:
    """The query string (``?…``) a link carries for these field values; None values are left out."""
    return "?" + urlencode({key: value for key, value in values.items() if value is not None})


def opener(fields: dict) -> Callable:
    """The page-load handler that fills ``fields`` (components by link name) from the page's URL:
    (the tab to open, the note on what was left out, then each field's value or no change)."""
    from ..runs import DEFAULT_PRESET
    from .common import session_of
    from .experiments_tab import FIRST_ABLATION_PRESET
    from .train_tab import LIMITS, PRESET_FILLED

    names = list(fields)

    def open_link(request: gr.Request):
        query = dict(getattr(request, "query_params", None) or {})
        if not query:
            return (gr.skip(),) * (2 + len(names))
        values, notes = read_link(query, LIMITS)
        # A preset other than the form's first one fills its fields through its own change event,
        # which would overwrite the link's values: those wait in the session for that event.
        pending, later = {}, set()
        if values.get("preset", DEFAULT_PRESET) != DEFAULT_PRESET:
            pending.update(preset=values["preset"], train={k: values[k] for k in PRESET_FILLED if k in values})
            later.update(PRESET_FILLED)
        if "knob" in values and values.get("ablate_preset", FIRST_ABLATION_PRESET) != FIRST_ABLATION_PRESET:
            pending.update(ablate_preset=values["ablate_preset"], knob=values["knob"])
            later.add("knob")
        session_of(request).pending_link = pending
        tab = gr.Tabs(selected=values["tab"]) if "tab" in values else gr.skip()
        note = gr.skip()
        if notes:
            note = gr.update(visible=True, value="**From the link, left out:** " + html.escape("; ".join(notes)))
            gr.Warning(f"{len(notes)} of the link's settings were left out (see the note at the top)")
        return (tab, note, *[values[n] if n in values and n not in later else gr.skip() for n in names])

    return open_link

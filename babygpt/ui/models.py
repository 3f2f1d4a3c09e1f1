"""The models each browser session can use: the shipped checkpoints and the ones it made itself.

Shipped checkpoints are loaded once per process and shared read-only by every session. A
session's own models (trained, uploaded, loaded from the Hub) live in that session's folder,
which is deleted when the session ends, and no other session can see or name them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..checkpoint import (
    Checkpoint,
    base_among,
    is_adapter,
    load_adapter,
    load_checkpoint,
    read_adapter_config,
    read_config,
    shipped_checkpoints,
    weights_path,
)
from ..kernels import bfloat16_weights
from ..models import Family, family_of_saved

WEIGHTS = ("float32", "bfloat16")  # the precisions a model can generate in


class LoadedModels:
    """Loaded checkpoints by folder, the least recently used dropped past ``size``.

    The shipped models are shared by every session and never changed in place. A session's own
    leave when the session ends (``forget``), so a crowd of visitors cannot fill the memory."""

    def __init__(self, size: int = 64):
        self.size = size
        self._loaded: OrderedDict[tuple, tuple[tuple, Checkpoint]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, base: Path | None, merged: bool, weights: str = "float32") -> Checkpoint:
        # The weights' mtimes are part of the key: a retrained model or base loads afresh.
        version = (weights_path(path).stat().st_mtime,) + ((weights_path(base).stat().st_mtime,) if base else ())
        key = (str(path), str(base), merged, weights)
        with self._lock:
            if key in self._loaded and self._loaded[key][0] == version:
                self._loaded.move_to_end(key)
                return self._loaded[key][1]
        if weights == "bfloat16":  # a bf16 copy of the float32 model, which stays loaded as it was
            full = self.get(path, base, merged)
            checkpoint = replace(full, model=bfloat16_weights(full.model))
        elif base is not None:
            checkpoint = load_adapter(path, base=base, merged=merged)
        else:
            checkpoint = load_checkpoint(path)
        with self._lock:
            self._loaded[key] = (version, checkpoint)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return checkpoint

    def forget(self, folder: Path) -> None:
        with self._lock:
            for key in [key for key in self._loaded if Path(key[0]).is_relative_to(folder)]:
                del self._loaded[key]

    def __len__(self) -> int:
        return len(self._loaded)


loaded_models = LoadedModels()


def load(path: Path, merged: bool = False, bases: dict[str, Path] | None = None,
         weights: str = "float32") -> Checkpoint:
    """A loaded checkpoint, cached until its weights file (or an adapter's base's) changes.

    An adapter sits on the base its config names, looked up among ``bases`` (default: the shipped
    models). ``merged``: the adapter's update folded into the base weights, a copy of its own.
    ``weights="bfloat16"``: a copy in bf16 for generating (``kernels.bfloat16_weights``)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    base = base_among(path, shipped_checkpoints() if bases is None else bases) if is_adapter(path) else None
    return loaded_models.get(Path(path), base, merged and base is not None, weights)


def family_at(path: Path) -> Family:
    """From the config alone: listing a model must not depend on its weights loading."""
    config = read_adapter_config(path) if is_adapter(path) else read_config(path)
    return family_of_saved(config["model"])


def has_attention(path: Path) -> bool:
    return family_at(path).has_attention


def can_be_a_base(path: Path) -> bool:
    """A model LoRA can adapt: its family has places for adapters, and it is not itself an adapter."""
    return not is_adapter(path) and bool(family_at(path).lora_targets)


@dataclass
class Session:
    """One visitor's models and files. ``trainer`` is the run in progress, for the Stop button."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="babygpt-session-")))
    own: dict[str, Path] = field(default_factory=dict)
    trainer: object = None
    stop_requested: threading.Event = field(default_factory=threading.Event)  # Stop before the run is set up
    curves: dict = field(default_factory=dict)  # the last run's loss curves, to redraw on another x axis
    last_compare: dict = field(default_factory=dict)  # the last Compare results, to recolour or inspect
    ablation: dict = field(default_factory=dict)  # the ablation in progress: its plan, results and stop flag
    pending_link: dict = field(default_factory=dict)  # a link's values that wait for a preset's change event
    last_used: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """The visitor is using the session now: a request that runs for long (a training, a long
        Compare) keeps it from counting as idle, from its start until its last answer."""
        self.last_used = time.monotonic()

    def models(self) -> dict[str, Path]:
        """Every model this session may use, by display name: shipped first, then its own."""
        return {**shipped_checkpoints(), **self.own}

    def path_of(self, name: str) -> Path:
        models = self.models()
        if name not in models:
            raise ValueError(f"no model named {name!r}; choose one of: {', '.join(models) or 'none'}")
        return models[name]

    def load(self, name: str, merged: bool = False, weights: str = "float32") -> Checkpoint:
        """One of this session's models, loaded; an adapter only ever on a base this session has."""
        return load(self.path_of(name), merged, bases=self.models(), weights=weights)

    def new_model_dir(self, base_name: str) -> tuple[str, Path]:
        """A fresh, unused name and folder for a model this session is about to make."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base_name).strip("-.") or "model"
        slug = slug.removeprefix("my-")  # a fine-tune of my-gpt is my-gpt-lora, not my-my-gpt-lora
        taken = set(self.models())
        name, n = f"my-{slug}", 1
        while name in taken:
            n += 1
            name = f"my-{slug}-{n}"
        return name, self.folder / name

    def close(self) -> None:
        self.ablation["stop"] = True  # no further run of an ablation starts
        if self.trainer is not None:
            self.trainer.stop()
        loaded_models.forget(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


_sessions: dict[str, Session] = {}
_lock = threading.Lock()
# A browser's session ends when its page closes (app.unload). An API client never closes a page,
# so a session unused for this long ends too, its files with it; never one that is training.
IDLE_SECONDS = float(os.environ.get("BABYGPT_SESSION_IDLE_SECONDS", 3600))


def session_for(key: str) -> Session:
    now = time.monotonic()
    with _lock:
        idle = [k for k, s in _sessions.items() if k != key and s.trainer is None and now - s.last_used > IDLE_SECONDS]
        ended = [_sessions.pop(k) for k in idle]
        if key not in _sessions:
            _sessions[key] = Session()
        session = _sessions[key]
        session.touch()
    for old in ended:
        old.close()
    return session


def end_session(key: str) -> None:
    with _lock:
        session = _sessions.pop(key, None)
    if session is not None:
        session.close()


def open_sessions() -> int:
    return len(_sessions)

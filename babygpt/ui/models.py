"""The models each browser session can use: the shipped checkpoints and the ones it made itself.

Shipped checkpoints are loaded once per process and shared read-only by every session. A
session's own models (trained, uploaded, loaded from the Hub) live in that session's folder,
which is deleted when the session ends, and no other session can see or name them.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import (Checkpoint, find_checkpoint, is_adapter, load_adapter, load_checkpoint, read_adapter_config,
                          read_config, shipped_checkpoints, weights_path)


@functools.lru_cache(maxsize=64)
def _load(path: str, version: tuple, merged: bool) -> Checkpoint:
    if merged:
        return load_adapter(path, merged=True)
    return load_checkpoint(path)


def load(path: Path, merged: bool = False) -> Checkpoint:
    """A loaded checkpoint, cached until its weights file (or an adapter's base's) changes.

    ``merged``: an adapter with its update folded into the base weights, a copy of its own (the
    cached models are shared by every session and never changed in place)."""
    version = (weights_path(path).stat().st_mtime,)
    if is_adapter(path):
        base = find_checkpoint(read_adapter_config(path)["base"])
        version += (weights_path(base).stat().st_mtime,)
    return _load(str(path), version, merged and is_adapter(path))


def has_attention(path: Path) -> bool:
    """From the config alone: listing a model must not depend on its weights loading."""
    config = read_adapter_config(path) if is_adapter(path) else read_config(path)
    return config["model"]["family"] in ("gpt", "llama")


def can_be_a_base(path: Path) -> bool:
    """A model LoRA can adapt: an attention family, and not itself an adapter."""
    return has_attention(path) and not is_adapter(path)


@dataclass
class Session:
    """One visitor's models and files. ``trainer`` is the run in progress, for the Stop button."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="babygpt-session-")))
    own: dict[str, Path] = field(default_factory=dict)
    trainer: object = None
    stop_requested: threading.Event = field(default_factory=threading.Event)  # Stop before the run is set up
    curves: dict = field(default_factory=dict)  # the last run's loss curves, to redraw on another x axis
    last_compare: dict = field(default_factory=dict)  # the last Compare results, to recolour or inspect
    last_used: float = field(default_factory=time.monotonic)

    def models(self) -> dict[str, Path]:
        """Every model this session may use, by display name: shipped first, then its own."""
        return {**shipped_checkpoints(), **self.own}

    def path_of(self, name: str) -> Path:
        models = self.models()
        if name not in models:
            raise ValueError(f"no model named {name!r}; choose one of: {', '.join(models) or 'none'}")
        return models[name]

    def new_model_dir(self, base_name: str) -> tuple[str, Path]:
        """A fresh, unused name and folder for a model this session is about to make."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base_name).strip("-.") or "model"
        taken = set(self.models())
        name, n = f"my-{slug}", 1
        while name in taken:
            n += 1
            name = f"my-{slug}-{n}"
        return name, self.folder / name

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.stop()
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
        session.last_used = now
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

"""Training events to an experiment tracker, for command-line users: ``--tracker trackio``.

trackio (Hugging Face's local-first tracker, with wandb's ``init``/``log``/``finish``) keeps its
runs in a SQLite file under ``TRACKIO_DIR`` (default ``~/.cache/huggingface/trackio``);
``trackio show`` opens its dashboard. It is optional: without it installed, asking for it says
how to install it. Every event the trainer yields is logged at its step: a step's loss, learning
rate, tokens/s and MFU, and an evaluation's train and val loss (the checkpoint's history).
"""

from __future__ import annotations

import importlib.util

TRACKERS = ("trackio",)
INSTALL = "pip install trackio==0.43.0"


def require(kind: str | None) -> None:
    """Refuse a tracker that is unknown or not installed (before anything is read or trained)."""
    if kind is None:
        return
    if kind not in TRACKERS:
        raise ValueError(f"unknown tracker {kind!r}; choose {', '.join(TRACKERS)}")
    if importlib.util.find_spec(kind) is None:
        raise ValueError(f"--tracker {kind} needs the {kind} package, which is not installed: {INSTALL}")


class TrackioTracker:
    def __init__(self, project: str, name: str, config: dict):
        import trackio

        self.trackio = trackio
        # No CPU or GPU sampling thread: the run's own events are what is logged.
        trackio.init(project=project, name=name, config=config, auto_log_cpu=False, auto_log_gpu=False)

    def log(self, event) -> None:
        if event.kind == "step":
            metrics = {"train/step_loss": event.loss, "train/lr": event.lr, "tokens_seen": event.tokens_seen,
                       "speed/tokens_per_sec": event.tokens_per_sec, "speed/mfu": event.mfu, "seconds": event.elapsed}
        elif event.kind == "eval":
            metrics = {"eval/train_loss": event.train_loss, "eval/val_loss": event.val_loss,
                       **{f"eval/val_loss/{name}": loss for name, loss in (event.other_val_loss or {}).items()},
                       **({"eval/accuracy": event.accuracy} if event.accuracy is not None else {})}
        else:
            return
        self.trackio.log({k: v for k, v in metrics.items() if v is not None}, step=event.step)

    def finish(self) -> None:
        self.trackio.finish()


def make_tracker(kind: str | None, project: str, name: str, config: dict):
    """The tracker asked for, or None."""
    if kind is None:
        return None
    require(kind)
    return TrackioTracker(project, name, config)

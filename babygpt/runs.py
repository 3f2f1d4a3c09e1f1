"""From names to a ready ``Trainer``: what the CLI and the app both call to start or resume a run.

Settings are layered: the family's config defaults < the preset < the caller's overrides. All of
them are checked before any data is tokenized or any weight is made, so a bad hyperparameter
fails at once with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint
from .data import Dataset, is_builtin, load_text
from .models import build_model, config_from_json, get_preset, make_config
from .tokenizer import load_tokenizer, train_tokenizer
from .trainer import TrainConfig, Trainer

DEFAULT_PRESET = "gpt"
# Settings of the machine a run happened to start on, not of the run: a resume picks its own.
MACHINE_SETTINGS = ("device", "threads")


def check_out_dir(out_dir: str | Path | None) -> None:
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"--out {out_dir} is a file; a checkpoint is a directory")


def resolve_settings(
    family: str | None = None, preset: str | None = None, model: dict | None = None, train: dict | None = None
) -> tuple[str, dict, TrainConfig]:
    """(family, model settings, validated TrainConfig). The model settings lack only vocab_size."""
    preset_model, preset_train = {}, {}
    if preset or not family:
        preset_family, settings = get_preset(preset or DEFAULT_PRESET)
        if family and family != preset_family:
            raise ValueError(f"preset {preset!r} is a {preset_family} preset, not {family}")
        family = preset_family
        preset_model, preset_train = settings.get("model", {}), settings.get("train", {})
    model_settings = {**preset_model, **(model or {})}
    make_config(family, **model_settings)  # validate now, with the default vocabulary size
    train_config = TrainConfig.from_dict({**preset_train, **(train or {})})
    return family, model_settings, train_config


def new_run(
    data: str,
    family: str | None = None,
    preset: str | None = None,
    model: dict | None = None,
    train: dict | None = None,
    tokenizer: str = "char",
    bpe_vocab_size: int = 512,
    out_dir: str | Path | None = None,
) -> Trainer:
    family, model_settings, train_config = resolve_settings(family, preset, model, train)
    check_out_dir(out_dir)
    text = load_text(data)
    token_map = train_tokenizer(tokenizer, text, bpe_vocab_size)
    model_config = make_config(family, **{**model_settings, "vocab_size": token_map.vocab_size})
    dataset = Dataset.from_text(text, token_map, model_config.block_size)
    torch.manual_seed(train_config.seed)
    # A file is recorded by its absolute path so that a resume works from any directory.
    run_info = {"corpus": str(data) if is_builtin(data) else str(Path(data).resolve()), "preset": preset}
    return Trainer(build_model(model_config), token_map, dataset, train_config, out_dir, run_info)


def resume_run(out_dir: str | Path, data: str | None = None, train: dict | None = None) -> Trainer:
    """Continue the run in ``out_dir`` with its own settings; ``train`` may extend max_iters etc."""
    check_out_dir(out_dir)
    if not Path(out_dir).is_dir():
        raise ValueError(f"cannot resume: {out_dir} is not a checkpoint directory")
    config = checkpoint.read_config(out_dir)
    token_map = load_tokenizer(Path(out_dir) / "tokenizer.json")
    model_config = config_from_json(config["model"])
    saved = {k: v for k, v in config.get("train", {}).items() if k not in MACHINE_SETTINGS}
    try:
        train_config = TrainConfig.from_dict({**saved, **(train or {})})
    except ValueError as error:
        raise ValueError(f"cannot resume {out_dir}: its training settings are invalid: {error}") from None
    data = data or config.get("corpus")
    if not data:
        raise ValueError(f"{out_dir} does not name its corpus; pass the data again")
    dataset = Dataset.from_text(load_text(data), token_map, model_config.block_size)
    run_info = {k: config[k] for k in ("corpus", "preset") if k in config}
    trainer = Trainer(build_model(model_config), token_map, dataset, train_config, out_dir, run_info)
    trainer.resume()
    return trainer

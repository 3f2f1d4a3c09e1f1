"""Checkpoints: a directory of safetensors and JSON, written atomically, read without pickle.

::

    config.json                   format version, model family + hyperparameters, tokenizer kind,
                                  training settings and corpus name
    tokenizer.json                the tokenizer (babygpt.tokenizer)
    model.safetensors             weights of the best model so far (lowest val loss)
    metrics.json                  best val loss, steps, tokens seen, training time, loss history
    training_state.safetensors    to resume: the latest weights, AdamW moments, RNG states, and
                                  (in its header) the step, counters and optimizer settings
    training_state.json           a readable copy of that header

Every file is written to a temporary name, flushed to disk and renamed over the old one, so a
crash mid-write leaves the previous version of that file intact. The training state is one
safetensors file whose header also carries the JSON (``training_state.json`` is its readable
copy), so its tensors and its step can never come from two different saves.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from .models import LanguageModel, build_model, config_from_json, config_to_dict
from .tokenizer import TOKENIZER_FILE, load_tokenizer, save_tokenizer

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
STATE_FILE = "training_state.safetensors"
STATE_JSON = "training_state.json"


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then move the finished file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # Created here first to learn the user's usual mode (umask): some writers, safetensors
        # among them, make their files readable by the owner only.
        temporary.touch(exist_ok=False)
        mode = temporary.stat().st_mode
        write(str(temporary))
        os.chmod(temporary, mode)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: Path, values: dict) -> None:
    text = json.dumps(values, indent=2, ensure_ascii=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return values


def save_checkpoint(
    directory, model: LanguageModel, tokenizer, metrics: dict, extra_config: dict | None = None, weights: bool = True,
    write_tokenizer: bool = True,
) -> None:
    """Write config, tokenizer, weights and metrics, metrics last. A run's later saves may skip
    the weights (not the best) and the tokenizer (unchanged)."""
    directory = Path(directory)
    config = {
        "format_version": FORMAT_VERSION,
        "model": config_to_dict(model.config),
        "tokenizer": tokenizer.kind,
        **(extra_config or {}),
    }
    write_json(directory / CONFIG_FILE, config)
    if write_tokenizer:
        atomic_write(directory / TOKENIZER_FILE, lambda tmp: save_tokenizer(tokenizer, tmp))
    if weights:
        atomic_write(directory / MODEL_FILE, lambda tmp: save_model(model, tmp))
    write_json(directory / METRICS_FILE, metrics)


@dataclass
class Checkpoint:
    model: LanguageModel
    tokenizer: object
    config: dict
    metrics: dict


def read_config(directory) -> dict:
    """config.json, checked: a malformed or newer-format config raises ``ValueError``."""
    path = Path(directory) / CONFIG_FILE
    config = read_json(path)
    version = config.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{path} has no integer format_version; it is not a BabyGPT checkpoint")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} is format {version}, newer than this BabyGPT understands ({FORMAT_VERSION}); upgrade babygpt"
        )
    try:
        config_from_json(config.get("model"))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path} has a malformed model config: {error}") from None
    if not isinstance(config.get("train", {}), dict):
        raise ValueError(f"{path} has a malformed 'train' entry: expected a JSON object")
    return config


def load_checkpoint(directory, device: str | torch.device = "cpu") -> Checkpoint:
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint {directory} is not a directory")
    config = read_config(directory)
    model_config = config_from_json(config["model"])
    tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(
            f"checkpoint {directory}: tokenizer has {tokenizer.vocab_size} tokens, model expects {model_config.vocab_size}"
        )
    model = build_model(model_config)
    load_weights(model, directory / MODEL_FILE)
    model.to(device).eval()
    metrics_path = directory / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    return Checkpoint(model, tokenizer, config, metrics)


def load_weights(model: LanguageModel, path: Path) -> None:
    if not path.exists():
        raise ValueError(f"{path} is missing")
    try:
        missing, unexpected = load_model(model, path, strict=False)
    except Exception as error:  # safetensors raises its own types for truncated or bad headers
        raise ValueError(f"{path} is not a readable safetensors file matching the config: {error}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not match the config: missing {sorted(missing)}, unexpected {sorted(unexpected)}")


# --- Training state, for resuming exactly ---------------------------------------------------------


def save_training_state(directory, model: LanguageModel, optimizer: torch.optim.Optimizer, rng: dict, state: dict) -> None:
    """Latest weights, AdamW moments and RNG states as tensors; counters as JSON in the header."""
    directory = Path(directory)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
    for name, value in rng.items():
        tensors[f"rng.{name}"] = value
    header = {**state, "optimizer_param_groups": optimizer_state["param_groups"]}
    text = json.dumps(header)
    atomic_write(directory / STATE_FILE, lambda tmp: save_file(_untie(tensors), tmp, metadata={"state": text}))
    write_json(directory / STATE_JSON, header)


def _untie(tensors: dict) -> dict:
    """safetensors refuses tensors that share memory (a tied head and embedding); copy any that do."""
    seen, out = set(), {}
    for key, value in tensors.items():
        pointer = value.untyped_storage().data_ptr()
        out[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    return out


def load_training_state(directory, model: LanguageModel, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Restore weights and optimizer in place; return (counters, rng tensors)."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        raise ValueError(f"cannot resume: {path} is missing")
    try:
        with safe_open(path, framework="pt") as f:
            header = json.loads(f.metadata()["state"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:
        raise ValueError(f"cannot resume: {path} is unreadable: {error}") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"cannot resume: {path} does not match the model (missing {missing}, unexpected {unexpected})")
    optimizer_state = {"state": {}, "param_groups": header.pop("optimizer_param_groups")}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optimizer_state)
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    return header, rng


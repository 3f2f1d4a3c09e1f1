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

A LoRA adapter (``babygpt.lora``) is a directory of its own, named as PEFT names its files:

    adapter_config.json           the LoRA settings, the base checkpoint it was trained on (a
                                  shipped name or a path) and the SHA-256 of the base's weights
    adapter_model.safetensors     only the adapter weights (A and B of every adapted matrix)
    metrics.json, training_state.*  as above (the training state holds only the adapter)

``load_checkpoint`` of an adapter directory loads its base, checks the hash, wraps the base with
the adapters and returns the adapted model: every tool that takes a checkpoint takes an adapter.

Every file is written to a temporary name, flushed to disk and renamed over the old one, so a
crash mid-write leaves the previous version of that file intact. The training state is one
safetensors file whose header also carries the JSON (``training_state.json`` is its readable
copy), so its tensors and its step can never come from two different saves.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from .lora import LoRAConfig, apply_lora, lora_config, lora_state_dict, merge_lora
from .models import LanguageModel, build_model, config_from_json, config_to_dict
from .tokenizer import TOKENIZER_FILE, load_tokenizer, save_tokenizer

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
STATE_FILE = "training_state.safetensors"
STATE_JSON = "training_state.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_FILE = "adapter_model.safetensors"
# A pushed adapter names its base's Hub repo under PEFT's key, beside ``base`` (where it was here)
BASE_REPO_KEY = "base_model_name_or_path"
# Where a model is on the Hub (pushed there, or downloaded from there), with the weights' sha256 then
HUB_ORIGIN_FILE = "hub_origin.json"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def remove_unfinished_writes(directory: Path) -> None:
    """Delete the temporaries of writes a killed process never finished (the finished files are whole)."""
    for stale in Path(directory).glob(".*.tmp"):
        if stale.is_file():
            stale.unlink()


def atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then move the finished file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # Created here first to learn the user's usual mode (umask): some writers, safetensors
        # among them, make their files readable by the owner only.
        temporary.touch(exist_ok=False)
        mode = temporary.stat().st_mode
        try:
            write(str(temporary))
            os.chmod(temporary, mode)
            with open(temporary, "rb+") as f:
                os.fsync(f.fileno())
        except Exception as error:  # safetensors reports the OS error inside its own exception's text
            number = getattr(error, "errno", None) or next(map(int, re.findall(r"os error (\d+)", str(error))), None)
            if number in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise ValueError(f"could not save {path}: {os.strerror(number)}. The {path.name} saved before "
                                 "is intact; free some space and resume.") from None
            raise
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
    base: Path | None = None  # an adapter's base checkpoint directory


def shipped_checkpoints(directory: Path = SHIPPED_DIR) -> dict[str, Path]:
    """The checkpoints (models and adapters) that come with BabyGPT, by name."""
    if not directory.is_dir():
        return {}
    return {d.name: d for d in sorted(directory.iterdir()) if is_checkpoint(d)}


def is_checkpoint(directory) -> bool:
    return (Path(directory) / CONFIG_FILE).is_file() or is_adapter(directory)


def is_adapter(directory) -> bool:
    return (Path(directory) / ADAPTER_CONFIG_FILE).is_file()


def weights_path(directory) -> Path:
    """The file that changes when a checkpoint's weights do (for caches)."""
    return Path(directory) / (ADAPTER_FILE if is_adapter(directory) else MODEL_FILE)


def find_checkpoint(name_or_path) -> Path:
    """A checkpoint directory from a path, or from the name of a shipped checkpoint (``gpt``)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = shipped_checkpoints()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise ValueError(
        f"no checkpoint {str(name_or_path)!r}: not a directory, nor a shipped model ({', '.join(shipped) or 'none'})"
    )


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


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickle(directory: Path) -> None:
    """Unpickling a file can run any code in it. Nothing here ever unpickles, and a directory that
    holds such files is refused whole, so no one mistakes one for part of a checkpoint."""
    found = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise ValueError(f"checkpoint {directory} holds pickle files ({', '.join(found)}): BabyGPT never loads "
                         "pickle, which can run code when loaded; a checkpoint is safetensors and JSON only")


def load_checkpoint(directory, device: str | torch.device = "cpu") -> Checkpoint:
    """A model checkpoint, or an adapter on its base (see ``load_adapter``), ready for sampling."""
    directory = Path(directory)
    if is_adapter(directory):
        return load_adapter(directory, device=device)  # which makes the same checks
    if not directory.is_dir():
        raise ValueError(f"checkpoint {directory} is not a directory")
    refuse_pickle(directory)
    config = read_config(directory)
    model_config = config_from_json(config["model"])
    tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(
            f"checkpoint {directory}: tokenizer has {tokenizer.vocab_size} tokens, model expects "
             f"{model_config.vocab_size}"
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
        raise ValueError(f"{path} does not match the config: missing {sorted(missing)}, unexpected "
                         f"{sorted(unexpected)}")


# --- LoRA adapters --------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_reference(base_dir: Path) -> str:
    """How an adapter names its base: a shipped checkpoint by name (it moves with the install),
    anything else by absolute path."""
    base_dir = Path(base_dir).resolve()
    for name, path in shipped_checkpoints().items():
        if path.resolve() == base_dir:
            return name
    return str(base_dir)


def save_adapter(directory, model: LanguageModel, metrics: dict, extra_config: dict, weights: bool = True) -> None:
    """Write adapter config, adapter weights (when ``weights``) and metrics, metrics last.

    ``extra_config`` must name the base: ``{"base": ..., "base_sha256": ..., ...}``."""
    if "base" not in extra_config or "base_sha256" not in extra_config:
        raise ValueError("an adapter's config must name its base checkpoint and the base's sha256")
    directory = Path(directory)
    lora = lora_config(model)
    if lora is None:
        raise ValueError("the model has no LoRA adapters to save")
    config = {
        "format_version": FORMAT_VERSION,
        "kind": "lora",
        "lora": {**asdict(lora), "targets": list(lora.targets)},
        "model": config_to_dict(model.config),
        **extra_config,
    }
    write_json(directory / ADAPTER_CONFIG_FILE, config)
    if weights:
        tensors = {k: v.cpu().contiguous() for k, v in lora_state_dict(model).items()}
        atomic_write(directory / ADAPTER_FILE, lambda tmp: save_file(tensors, tmp))
    write_json(directory / METRICS_FILE, metrics)


def read_adapter_config(directory) -> dict:
    path = Path(directory) / ADAPTER_CONFIG_FILE
    config = read_json(path)
    version = config.get("format_version")
    if not isinstance(version, int) or config.get("kind") != "lora":
        raise ValueError(f"{path} is not a BabyGPT LoRA adapter config (no format_version, or kind is not 'lora')")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} is format {version}, newer than this BabyGPT understands; upgrade babygpt")
    for key, kind in (("base", str), ("base_sha256", str), ("lora", dict), ("model", dict)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path} needs {key!r} ({kind.__name__})")
    if not isinstance(config.get(BASE_REPO_KEY, ""), str):
        raise ValueError(f"{path}: {BASE_REPO_KEY!r} must be a repo id")
    try:
        lora = LoRAConfig(**{**config["lora"], "targets": tuple(config["lora"].get("targets", ()))})
        lora.validate()
        config_from_json(config["model"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} has malformed settings: {error}") from None
    config["lora_config"] = lora
    return config


def check_base(config: dict, base_dir: Path, adapter_dir: Path) -> None:
    """Refuse any base but the exact weights the adapter was trained on."""
    weights = Path(base_dir) / MODEL_FILE
    if is_adapter(base_dir) or not weights.exists():
        raise ValueError(f"{base_dir} is not a model checkpoint, so it cannot be the base of adapter {adapter_dir}")
    base_model = read_config(base_dir)["model"]
    if base_model != config["model"]:
        wanted = config["model"]
        if wanted["family"] != base_model["family"]:
            raise ValueError(f"adapter {adapter_dir} adapts a {wanted['family']} model; {base_dir} is a "
                             f"{base_model['family']} model. Load the adapter onto its own base, {config['base']!r}.")
        differences = ", ".join(
            f"{key} {wanted.get(key)!r} vs {base_model.get(key)!r}"
            for key in sorted(set(wanted) | set(base_model)) if wanted.get(key) != base_model.get(key)
        )
        raise ValueError(
            f"adapter {adapter_dir} does not fit {base_dir}: its base model and this one differ in {differences} "
            f"(adapter's base vs this). Load the adapter onto its own base, {config['base']!r}."
        )
    found = file_sha256(weights)
    if found != config["base_sha256"]:
        raise ValueError(
            f"adapter {adapter_dir} was trained on base {config['base']!r} whose weights have sha256 "
            f"{config['base_sha256'][:12]}…, but {weights} has sha256 {found[:12]}…: a different model (retrained "
            "or another checkpoint of the same shape). Load the adapter onto the base it was trained on."
        )


def base_among(adapter_dir, bases: dict[str, Path]) -> Path:
    """The adapter's base, looked up only among ``bases`` (name -> checkpoint directory): for an
    adapter from a stranger, whose config may name any path on this machine."""
    named = read_adapter_config(adapter_dir)["base"]
    if named in bases:
        return bases[named]
    for path in bases.values():
        if str(Path(path).resolve()) == named:
            return path
    # One message whether or not ``named`` exists here, so it cannot be used to probe the disk.
    raise ValueError(f"the adapter was trained on base {named!r}, which is not one of your models "
                     f"({', '.join(bases) or 'none'}); load or train its base first")


def load_adapter(directory, base=None, device: str | torch.device = "cpu", merged: bool = False) -> Checkpoint:
    """The adapter in ``directory`` on its base (the one its config names, or ``base``, a checkpoint
    directory or shipped name). ``merged`` folds the adapters into the base weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"adapter {directory} is not a directory")
    refuse_pickle(directory)
    config = read_adapter_config(directory)
    try:
        base_dir = find_checkpoint(base if base is not None else config["base"])
    except ValueError:
        raise ValueError(
            f"adapter {directory} needs its base checkpoint {config['base']!r}, which is not here; "
            "pass the base's directory"
        ) from None
    check_base(config, base_dir, directory)
    loaded = load_checkpoint(base_dir, device="cpu")
    model = apply_lora(loaded.model, config.pop("lora_config"))
    path = directory / ADAPTER_FILE
    if not path.exists():
        raise ValueError(f"{path} is missing")
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as error:
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from None
    expected = lora_state_dict(model)
    if tensors.keys() != expected.keys() or any(tensors[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(f"{path} does not match its adapter config (different targets, rank or model)")
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(tensors[key])
    if merged:
        merge_lora(model)
    model.to(device).eval()
    metrics_path = directory / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    return Checkpoint(model, loaded.tokenizer, config, metrics, base=base_dir)


# --- What a training run writes ------------------------------------------------------------------


class RunWriter:
    """Everything a training run writes to its directory, in one place. At each evaluation: the
    weights when they are the best so far (a model's, or only a LoRA adapter's: its base stays
    where it is), the tokenizer the first time (a run's tokenizer never changes), the config and
    metrics every time (so settings changed on a resume are the ones saved), the training state
    to resume from, and the attention snapshots."""

    def __init__(self, directory, tokenizer):
        self.directory = Path(directory)
        self.tokenizer = tokenizer
        self.tokenizer_written = False

    def save(self, model: LanguageModel, optimizer, *, metrics: dict, config: dict, rng: dict, counters: dict,
             weights: bool, snapshots: tuple[list[str], dict[int, torch.Tensor]] | None = None) -> None:
        if lora_config(model) is not None:
            save_adapter(self.directory, model, metrics, config, weights=weights)
        else:
            save_checkpoint(self.directory, model, self.tokenizer, metrics, config, weights=weights,
                            write_tokenizer=not self.tokenizer_written)
            self.tokenizer_written = True
        save_training_state(self.directory, model, optimizer, rng, counters)
        if snapshots is not None:
            save_attention_snapshots(self.directory, *snapshots)


# --- Attention over training ----------------------------------------------------------------------

SNAPSHOTS_FILE = "attention_snapshots.safetensors"


def save_attention_snapshots(directory, tokens: list[str], snapshots: dict[int, torch.Tensor]) -> None:
    """Every head's attention on the probe text at each evaluation: ``step_N`` tensors
    (layers, heads, T, T), the probe's tokens as JSON in the header."""
    tensors = {f"step_{step}": weights.contiguous() for step, weights in snapshots.items()}
    metadata = {"tokens": json.dumps(tokens, ensure_ascii=False)}
    atomic_write(Path(directory) / SNAPSHOTS_FILE, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def has_attention_snapshots(directory) -> bool:
    return directory is not None and (Path(directory) / SNAPSHOTS_FILE).is_file()


def load_attention_snapshots(directory) -> tuple[list[str], dict[int, torch.Tensor]]:
    """(probe tokens, {step: weights}) in step order."""
    path = Path(directory) / SNAPSHOTS_FILE
    try:
        with safe_open(path, framework="pt") as f:
            tokens = json.loads(f.metadata()["tokens"])
            snapshots = {int(key.split("_", 1)[1]): f.get_tensor(key) for key in f.keys()}
    except Exception as error:
        raise ValueError(f"{path} is not a readable attention snapshot file: {error}") from None
    return tokens, dict(sorted(snapshots.items()))


# --- Training state, for resuming exactly ---------------------------------------------------------


def save_training_state(directory, model: LanguageModel, optimizer: torch.optim.Optimizer, rng: dict,
                        state: dict) -> None:
    """Latest weights, AdamW moments and RNG states as tensors; counters as JSON in the header.

    A model with LoRA adapters saves only the adapters: its base is frozen and saved elsewhere."""
    directory = Path(directory)
    weights = lora_state_dict(model) if lora_config(model) is not None else model.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in weights.items()}
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
    frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    missing = [name for name in missing if name not in frozen]  # frozen weights (a LoRA base) are not saved
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


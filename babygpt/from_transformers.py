"""Import: a transformers GPT-2 or Llama checkpoint as a BabyGPT model, to look inside it.

The reverse of ``babygpt.export``, and what nanoGPT's ``GPT.from_pretrained('gpt2')`` does: a
directory holding transformers' ``config.json``, ``model.safetensors`` and a tokenizer becomes a
model of the family whose ``transformers_model_types`` names the config's ``model_type`` (GPT-2
into ``gpt``, Llama into ``llama``); each family maps the config and the weight names itself and
refuses, with the reason, what it cannot express. The tokenizer is read by ``tokenizers``
(``tokenizer.json``, or GPT-2's older ``vocab.json`` + ``merges.txt``).

Nothing is unpickled: a directory with only pickle weights (``pytorch_model.bin``) is refused
before any of its bytes are read. transformers itself is not needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .checkpoint import CONFIG_FILE, FORMAT_VERSION, MODEL_FILE, PICKLE_SUFFIXES, Checkpoint, read_json, save_checkpoint
from .models import build_model, config_to_dict, family_for_transformers, make_config
from .tokenizer import BPETokenizer

# What an import reads: the config, the weights (the index of split ones only to say they are
# split) and one of the two ways GPT-2 tokenizers are stored
IMPORT_FILES = (CONFIG_FILE, MODEL_FILE, f"{MODEL_FILE}.index.json", "tokenizer.json", "vocab.json", "merges.txt")


def max_weight_bytes() -> int | None:
    """The app's limit on an imported model's weights, ``BABYGPT_MAX_MODEL_MB`` (1024 MB: GPT-2's
    124M in fp32 fits, GPT-2 medium does not); 0 lifts it."""
    megabytes = float(os.environ.get("BABYGPT_MAX_MODEL_MB", 1024))
    return int(megabytes * 2**20) if megabytes > 0 else None


def is_transformers_config(values: dict) -> bool:
    """A transformers ``config.json`` (it names a ``model_type``), not a BabyGPT checkpoint's."""
    return isinstance(values, dict) and "model_type" in values and "format_version" not in values


def read_transformers_config(directory: Path) -> dict:
    values = read_json(directory / CONFIG_FILE)  # missing, not JSON or not an object: ValueError
    if not is_transformers_config(values):
        raise ValueError(f"{directory / CONFIG_FILE} is not a transformers config (it names no model_type)")
    return values


def check_weights_file(directory: Path, max_bytes: int | None) -> Path:
    """The safetensors weights, refusing pickle-only, sharded and oversized ones without reading them."""
    weights = directory / MODEL_FILE
    if not weights.is_file():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ValueError(f"{directory.name} has only pickle weights ({', '.join(pickles)}): loading pickle can "
                             "run any code in it, so BabyGPT never does; ask for (or convert to) model.safetensors")
        if (directory / f"{MODEL_FILE}.index.json").is_file():
            raise ValueError(f"{directory.name} splits its weights over several files: BabyGPT imports one "
                             f"{MODEL_FILE} (models of a few hundred million parameters)")
        raise ValueError(f"{directory.name} has no {MODEL_FILE}")
    check_size(weights.stat().st_size, max_bytes, directory.name)
    return weights


def check_size(size: int, max_bytes: int | None, name: str) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"{name}'s weights are {size / 2**20:,.1f} MB, over this app's limit of "
                         f"{max_bytes / 2**20:,.1f} MB (BABYGPT_MAX_MODEL_MB): pick a smaller model")


def import_tokenizer(directory: Path) -> BPETokenizer:
    """The repo's tokenizer through ``tokenizers``: ``tokenizer.json``, else GPT-2's vocab + merges."""
    try:
        if (directory / "tokenizer.json").is_file():
            return BPETokenizer(Tokenizer.from_file(str(directory / "tokenizer.json")))
        if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            tokenizer = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            return BPETokenizer(tokenizer)
    except Exception as error:  # tokenizers raises its own exception types
        raise ValueError(f"{directory.name}'s tokenizer cannot be read: {error}") from None
    raise ValueError(f"{directory.name} has no tokenizer (tokenizer.json, or vocab.json with merges.txt): "
                     "without it no text can be turned into tokens")


def matching_state(model, state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``state`` checked against the model the config describes: every weight there, none extra, same shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{key} {tuple(state[key].shape)} where the config means {tuple(expected[key].shape)}"
             for key in sorted(set(state) & set(expected)) if state[key].shape != expected[key].shape]
    if missing or unexpected or wrong:
        problems = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:5])}"] if unexpected else []) + wrong[:5]
        raise ValueError(f"{name}'s weights do not match its config: {'; '.join(problems)}")
    return {key: value.to(torch.float32) for key, value in state.items()}


def import_transformers(directory, max_bytes: int | None = None) -> Checkpoint:
    """The transformers checkpoint in ``directory`` as a BabyGPT model of the family that imports it."""
    directory = Path(directory)
    hf_config = read_transformers_config(directory)
    family = family_for_transformers(hf_config)
    weights = check_weights_file(directory, max_bytes)
    config = make_config(family.name, **family.model_class.config_from_transformers(hf_config))
    tokenizer = import_tokenizer(directory)
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"{directory.name}'s tokenizer has {tokenizer.vocab_size} tokens and its model "
                         f"{config.vocab_size}: BabyGPT needs one id per row of the embedding")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{weights.name} of {directory.name} is not a readable safetensors file: {error}") from None
    model = build_model(config)
    model.load_state_dict(matching_state(model, model.state_from_transformers(tensors), directory.name))
    saved = {"format_version": FORMAT_VERSION, "model": config_to_dict(config), "tokenizer": tokenizer.kind,
             "imported_from": {"model_type": hf_config["model_type"],
                               "architectures": hf_config.get("architectures") or []}}
    return Checkpoint(model.eval(), tokenizer, saved, {})


def save_imported(directory, out_dir, max_bytes: int | None = None, source: str | None = None) -> Path:
    """Import ``directory`` and write it as a BabyGPT checkpoint in ``out_dir`` (the app's models are
    checkpoint directories)."""
    loaded = import_transformers(directory, max_bytes)
    extra = {"imported_from": {**loaded.config["imported_from"], "source": source or str(directory)}}
    save_checkpoint(out_dir, loaded.model, loaded.tokenizer, {}, extra)
    return Path(out_dir)

"""The registry: one line per model family, and the presets they bring.

A new family is one file (a config dataclass, a ``LanguageModel`` subclass, ``PRESETS`` and a
``FAMILY`` record) and one line in ``FAMILIES`` below; ``base.py`` lists what the model class
answers for the rest of BabyGPT.
"""

from __future__ import annotations

import dataclasses

from . import bigram, gpt, llama, lstm, ngram
from .base import BaseConfig, Family, HookPoint, LanguageModel, config_from_dict, evaluating

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        bigram.FAMILY,
        ngram.FAMILY,
        lstm.FAMILY,
        gpt.FAMILY,
        llama.FAMILY,
    )
}

# preset name -> (family name, {"model": ..., "train": ...})
PRESETS: dict[str, tuple[str, dict]] = {
    preset: (family.name, settings) for family in FAMILIES.values() for preset, settings in family.presets.items()
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def get_preset(name: str) -> tuple[str, dict]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def family_of(config: BaseConfig) -> str:
    for family in FAMILIES.values():
        if type(config) is family.config_class:
            return family.name
    raise ValueError(f"{type(config).__name__} is not the config of a registered family")


def family_of_saved(model: dict) -> Family:
    """The family of a saved model config (``config_to_dict``'s form), without building anything."""
    if not isinstance(model, dict):
        raise ValueError("a model config must be a JSON object with a 'family' key")
    return get_family(model.get("family"))


def family_for_transformers(hf_config: dict) -> Family:
    """The family that imports a transformers ``config.json`` (by its ``model_type``), or why none does."""
    wanted = hf_config.get("model_type") if isinstance(hf_config, dict) else None
    for family in FAMILIES.values():
        if wanted in family.model_class.transformers_model_types:
            return family
    architectures = ", ".join(hf_config.get("architectures") or []) if isinstance(hf_config, dict) else ""
    importable = ", ".join(f"{model_type} (into {family.name})" for family in FAMILIES.values()
                           for model_type in family.model_class.transformers_model_types)
    raise ValueError(f"a {wanted or 'model without a model_type'}{f' ({architectures})' if architectures else ''} "
                     f"is not a model BabyGPT can import: it imports {importable}")


def make_config(family: str, **values) -> BaseConfig:
    """A validated config of ``family``; unknown fields and bad values raise ``ValueError``."""
    return config_from_dict(get_family(family).config_class, values)


def build_model(config: BaseConfig) -> LanguageModel:
    return FAMILIES[family_of(config)].model_class(config)


def config_to_dict(config: BaseConfig) -> dict:
    return {"family": family_of(config), **dataclasses.asdict(config)}


def config_from_json(values: dict) -> BaseConfig:
    """Inverse of ``config_to_dict``: ``{"family": ..., fields...}`` -> a validated config."""
    if not isinstance(values, dict) or "family" not in values:
        raise ValueError("a model config must be a JSON object with a 'family' key")
    fields = dict(values)
    return make_config(fields.pop("family"), **fields)


__all__ = [
    "FAMILIES",
    "PRESETS",
    "BaseConfig",
    "Family",
    "HookPoint",
    "LanguageModel",
    "build_model",
    "config_from_json",
    "config_to_dict",
    "evaluating",
    "family_of",
    "family_of_saved",
    "family_for_transformers",
    "get_family",
    "get_preset",
    "make_config",
]

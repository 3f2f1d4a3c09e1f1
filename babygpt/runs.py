"""From names to a ready ``Trainer``: what the CLI and the app both call to start or resume a run.

Settings are layered: the family's config defaults < the preset < the caller's overrides. All of
them are checked before any data is tokenized or any weight is made, so a bad hyperparameter
fails at once with a clear message.

``new_finetune`` starts from a trained checkpoint instead: LoRA adapters on the frozen base (the
run's directory then holds only the adapter), or, without a LoRA config, all of the base's weights
trained further. Either way every evaluation also reports the val loss on the base's own corpus,
so the curves show what the model forgets while it learns the new text.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint
from .data import Dataset, is_builtin, load_text, val_lines
from .lora import LoRAConfig, apply_lora, check_supported
from .models import build_model, config_from_json, get_preset, make_config
from .tokenizer import load_tokenizer, train_tokenizer
from .trainer import TrainConfig, Trainer

DEFAULT_PRESET = "gpt"
# Settings of the machine a run happened to start on, not of the run: a resume picks its own.
MACHINE_SETTINGS = ("device", "threads")
# A fine-tune is short and starts from a good model: a short warmup, evaluations from step 0, no
# decay (the adapters start at zero and decay would only pull them back).
FINETUNE_DEFAULTS = {"max_iters": 500, "eval_interval": 50, "warmup_iters": 20, "learning_rate": 3e-3,
                     "min_lr": 3e-4, "weight_decay": 0.0, "eval_at_start": True, "sample_tokens": 0}
# What a run's config.json / adapter_config.json carries besides the settings, kept on resume.
RUN_INFO = ("corpus", "preset", "base", "base_sha256", "base_corpus", "drop_unknown", "dropped_characters")


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
    run_info = {"corpus": corpus_name(data), "preset": preset}
    return Trainer(build_model(model_config), token_map, dataset, train_config, out_dir, run_info,
                   val_problems=task_problems(data, text, dataset, token_map))


# Problems greedy-decoded at every evaluation of a task with answers: enough for a share in
# steps of 1 %, few enough that an evaluation of a small model stays well under a second.
EVAL_PROBLEMS = 100


def task_problems(data, text: str, dataset: Dataset, tokenizer) -> list[str] | None:
    """The val split's first ``a+b=c`` lines when the corpus is the addition task, else None."""
    if not (is_builtin(data) and str(data).startswith("addition")):
        return None
    return val_lines(text, dataset.val_start(tokenizer))[:EVAL_PROBLEMS]


def corpus_name(data: str | Path) -> str:
    """How a run records its corpus: a built-in by name, a file by absolute path (so that a
    resume works from any directory)."""
    return str(data) if is_builtin(data) else str(Path(data).resolve())


def fit_to_vocabulary(text: str, tokenizer, drop_unknown: bool) -> tuple[str, int]:
    """(text, characters dropped). A fine-tune keeps its base's tokenizer, and a character
    vocabulary has no token for a character its corpus never had: refuse, or drop them."""
    unknown = tokenizer.unknown_characters(text) if hasattr(tokenizer, "unknown_characters") else []
    if not unknown:
        return text, 0
    if not drop_unknown:
        shown = " ".join(repr(c) for c in unknown[:20])
        raise ValueError(
            f"the corpus has {len(unknown)} character(s) that the model's vocabulary lacks ({shown}); "
            "drop them (--drop-unknown, or the app's 'drop characters the base never saw') or fine-tune a base "
            "with a BPE tokenizer"
        )
    kept = text.translate({ord(c): None for c in unknown})
    return kept, len(text) - len(kept)


def base_corpus_val(corpus: str | None, new_corpus: str, tokenizer, block_size: int) -> dict[str, Dataset]:
    """{name: the base corpus} for the forgetting curve, or {} when it is the same corpus or gone."""
    if not corpus or corpus == new_corpus:
        return {}
    try:
        dataset = Dataset.from_text(load_text(corpus), tokenizer, block_size)
    except ValueError:  # a file moved away since the base was trained: no forgetting curve
        return {}
    return {corpus if is_builtin(corpus) else Path(corpus).name: dataset}


def new_finetune(
    base: str | Path,
    data: str,
    lora: LoRAConfig | None = None,
    train: dict | None = None,
    out_dir: str | Path | None = None,
    drop_unknown: bool = False,
) -> Trainer:
    """Fine-tune checkpoint ``base`` (a directory or a shipped name) on ``data``: LoRA adapters when
    ``lora`` is given (``out_dir`` then holds only the adapter), else every weight."""
    base_dir = checkpoint.find_checkpoint(base)
    if checkpoint.is_adapter(base_dir):
        raise ValueError(f"{base} is a LoRA adapter; fine-tune a model checkpoint (the adapter's base)")
    check_out_dir(out_dir)
    if out_dir is not None and Path(out_dir).resolve() == base_dir.resolve():
        raise ValueError("the output directory is the base checkpoint itself; write the fine-tune somewhere else")
    if lora is not None:
        lora.validate()
    train_config = TrainConfig.from_dict({**FINETUNE_DEFAULTS, **(train or {})})
    loaded = checkpoint.load_checkpoint(base_dir)
    if lora is not None:
        check_supported(loaded.model)
    corpus = corpus_name(data)
    text, dropped = fit_to_vocabulary(load_text(data), loaded.tokenizer, drop_unknown)
    block_size = loaded.model.config.block_size
    dataset = Dataset.from_text(text, loaded.tokenizer, block_size)
    others = base_corpus_val(loaded.config.get("corpus"), corpus, loaded.tokenizer, block_size)
    run_info = {"corpus": corpus, "preset": loaded.config.get("preset"), "base": checkpoint.base_reference(base_dir),
                "base_sha256": checkpoint.file_sha256(base_dir / checkpoint.MODEL_FILE),
                "base_corpus": loaded.config.get("corpus"), "drop_unknown": drop_unknown, "dropped_characters": dropped}
    torch.manual_seed(train_config.seed)  # the adapters' A matrices and dropout
    model = loaded.model
    if lora is not None:
        apply_lora(model, lora)
    return Trainer(model, loaded.tokenizer, dataset, train_config, out_dir, run_info, others,
                   val_problems=task_problems(data, text, dataset, loaded.tokenizer))


def resume_run(out_dir: str | Path, data: str | None = None, train: dict | None = None) -> Trainer:
    """Continue the run in ``out_dir`` (a training run, a full fine-tune or a LoRA adapter) with its
    own settings; ``train`` may extend max_iters etc."""
    check_out_dir(out_dir)
    if not Path(out_dir).is_dir():
        raise ValueError(f"cannot resume: {out_dir} is not a checkpoint directory")
    checkpoint.remove_unfinished_writes(Path(out_dir))  # a run killed mid-save leaves its temporary behind
    if checkpoint.is_adapter(out_dir):
        config = checkpoint.read_adapter_config(out_dir)
        base_dir = checkpoint.find_checkpoint(config["base"])
        checkpoint.check_base(config, base_dir, Path(out_dir))
        base = checkpoint.load_checkpoint(base_dir)
        token_map, model = base.tokenizer, apply_lora(base.model, config["lora_config"])
    else:
        config = checkpoint.read_config(out_dir)
        token_map = load_tokenizer(Path(out_dir) / "tokenizer.json")
        model = build_model(config_from_json(config["model"]))
    saved = {k: v for k, v in config.get("train", {}).items() if k not in MACHINE_SETTINGS}
    trained_with, asked = saved.get("optimizer", "adamw"), (train or {}).get("optimizer")
    if asked is not None and asked != trained_with:  # the saved state is that optimizer's
        raise ValueError(f"cannot resume {out_dir} with {asked}: it trained with {trained_with}; resume it with "
                         f"{trained_with}, or train a new run with {asked}")
    try:
        train_config = TrainConfig.from_dict({**saved, **(train or {})})
    except ValueError as error:
        raise ValueError(f"cannot resume {out_dir}: its training settings are invalid: {error}") from None
    data = data or config.get("corpus")
    if not data:
        raise ValueError(f"{out_dir} does not name its corpus; pass the data again")
    text, _ = fit_to_vocabulary(load_text(data), token_map, bool(config.get("drop_unknown")))
    block_size = model.config.block_size
    dataset = Dataset.from_text(text, token_map, block_size)
    others = base_corpus_val(config.get("base_corpus"), config.get("corpus"), token_map, block_size)
    run_info = {k: config[k] for k in RUN_INFO if k in config}
    trainer = Trainer(model, token_map, dataset, train_config, out_dir, run_info, others,
                      val_problems=task_problems(data, text, dataset, token_map))
    trainer.resume()
    return trainer

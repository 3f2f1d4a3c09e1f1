"""Export to Hugging Face ``transformers``: a BabyGPT checkpoint as a directory that
``transformers.AutoModelForCausalLM.from_pretrained`` loads and that gives the same logits.

- Each family maps itself (``model.to_transformers()``): ``gpt`` becomes GPT-2
  (``GPT2LMHeadModel``), ``llama`` becomes Llama (``LlamaForCausalLM``); a family without a
  counterpart says why, and nothing is written.
- A LoRA adapter is exported merged into its base: one plain model with the adapted weights;
  or, with ``export_peft``, as a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``)
  beside its base in transformers' layout, which ``peft.PeftModel.from_pretrained`` puts back
  together with the same logits.

Only what transformers can express is exported: GPT-2 needs a gpt with its MLP and LayerNorms,
full-rank attention and no time weighting (the attention-ladder presets and
``gpt-time-weighted`` are refused). transformers is not needed to export, only to load the result.

The tokenizer is converted too, so ``AutoTokenizer`` and ``pipeline("text-generation")`` run the
export: a character vocabulary becomes a ``tokenizers`` BPE model with no merges (one token per
character, the same ids) and a decoder that joins tokens without spaces; a BPE tokenizer already
is a ``tokenizers`` model and is written as it is. ``tokenizer_config.json`` and
``generation_config.json`` come with them, and ``babygpt_tokenizer.json`` keeps BabyGPT's own file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models

from . import checkpoint
from .lora import LoRALinear, lora_layers
from .models import build_model
from .tokenizer import TOKENIZER_FILE, CharTokenizer

# BabyGPT's own tokenizer file in an export: transformers' tokenizer.json takes the usual name
OWN_TOKENIZER_FILE = "babygpt_tokenizer.json"


def plain_model(model):
    """The model without LoRA wrappers, adapters merged into the weights (a copy if there are any)."""
    if not lora_layers(model):
        return model
    plain = build_model(model.config)
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            weight = module.base.weight.detach() + (0 if module.merged else module.delta().detach())
            state[f"{name}.weight"] = weight
            if module.base.bias is not None:
                state[f"{name}.bias"] = module.base.bias.detach()
    for name, value in model.state_dict().items():
        if ".lora_" not in name and ".base." not in name:
            state.setdefault(name, value)
    if any(layer.tied for layer in lora_layers(model)):
        raise ValueError("the adapter changes a head tied to the embedding: it cannot be merged into one model")
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def transformers_tokenizer(tokenizer) -> Tokenizer:
    """BabyGPT's tokenizer as a ``tokenizers.Tokenizer`` with the same ids for every text it encodes.

    A character vocabulary is a BPE model without merges: with no pre-tokenizer the whole text is
    one word, split into its characters, each looked up. transformers cannot raise on a character
    outside the vocabulary as BabyGPT does: it leaves it out (the README says so)."""
    if isinstance(tokenizer, CharTokenizer):
        converted = Tokenizer(models.BPE(vocab=dict(tokenizer.index), merges=[]))
        converted.decoder = decoders.Fuse()  # join the characters back with nothing in between
        return converted
    return Tokenizer.from_str(tokenizer.tokenizer.to_str())


def tokenizer_files(tokenizer, block_size: int) -> dict[str, str]:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``generation_config.json`` for transformers.

    No token ends a text (BabyGPT's vocabularies have none), so generation stops only at its
    length; ``clean_up_tokenization_spaces`` would change decoded text, so it is off."""
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
        "clean_up_tokenization_spaces": False, "add_prefix_space": False,
    }
    generation_config = {"do_sample": False, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    return {
        "tokenizer.json": transformers_tokenizer(tokenizer).to_str(),
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2) + "\n",
        "generation_config.json": json.dumps(generation_config, indent=2) + "\n",
    }


def write_transformers_files(loaded: checkpoint.Checkpoint, converted: tuple[dict, dict], base_dir: Path,
                             out_dir: Path) -> None:
    """The checkpoint in transformers' layout in the existing ``out_dir``; ``converted`` is its
    model's ``to_transformers()`` (adapters merged), ``base_dir`` the checkpoint with its tokenizer."""
    config, state = converted
    tensors = {name: value.detach().to(torch.float32).contiguous().clone() for name, value in state.items()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name, text in tokenizer_files(loaded.tokenizer, loaded.model.config.block_size).items():
        (out_dir / name).write_text(text, encoding="utf-8")
    shutil.copyfile(base_dir / TOKENIZER_FILE, out_dir / OWN_TOKENIZER_FILE)


def export_transformers(source, out_dir) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in transformers' layout for the checkpoint
    ``source`` (a directory or a shipped name); ``out_dir`` must not exist yet."""
    source_dir = checkpoint.find_checkpoint(source)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir} already exists; export into a new directory")
    loaded = checkpoint.load_checkpoint(source_dir)
    converted = plain_model(loaded.model).to_transformers()  # or the family's reason why not
    out_dir.mkdir(parents=True)
    try:
        write_transformers_files(loaded, converted, checkpoint.find_checkpoint(loaded.base or source_dir), out_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # nothing half-written
        raise
    return out_dir


def export_peft(source, out_dir) -> Path:
    """A LoRA adapter as ``out_dir/base`` (its base, transformers' layout) and ``out_dir/adapter``
    (PEFT's layout, pointing at ``out_dir/base``).

    GPT's fused q/k/v matrix carries one adapter per adapted part; PEFT has one per matrix, so the
    parts are stacked: A = [A_q; A_v] (rank r per part) and B places each part's rows in its own
    columns, zero elsewhere, which is the same update. That matrix's rank and alpha are then the
    parts' sum (PEFT's ``rank_pattern`` / ``alpha_pattern``), keeping the scale alpha / r."""
    source_dir = checkpoint.find_checkpoint(source)
    if not checkpoint.is_adapter(source_dir):
        raise ValueError(f"{source} is not a LoRA adapter: export a model with export_transformers")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir} already exists; export into a new directory")
    loaded = checkpoint.load_checkpoint(source_dir)
    lora = loaded.config["lora"]
    tensors, targets, rank_pattern, alpha_pattern = {}, [], {}, {}
    for name, module in loaded.model.named_modules():
        if not isinstance(module, LoRALinear):
            continue
        hf_name = loaded.model.transformers_module_name(name)
        targets.append(hf_name)
        parts = sorted(module.parts.items(), key=lambda item: item[1])
        a = torch.cat([module.lora_A[part] for part, _ in parts])
        b = torch.zeros(module.base.out_features, a.shape[0])
        for i, (part, (start, stop)) in enumerate(parts):
            b[start:stop, i * lora["r"] : (i + 1) * lora["r"]] = module.lora_B[part]
        if len(parts) > 1:
            rank_pattern[hf_name] = a.shape[0]
            alpha_pattern[hf_name] = lora["alpha"] * len(parts)
        prefix = f"base_model.model.{hf_name}"
        tensors[f"{prefix}.lora_A.weight"] = a.detach().contiguous()
        tensors[f"{prefix}.lora_B.weight"] = b.detach().contiguous()
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str((out_dir / "base").resolve()),
        "r": lora["r"], "lora_alpha": lora["alpha"], "lora_dropout": lora["dropout"], "bias": "none",
        "target_modules": targets, "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
        "fan_in_fan_out": loaded.model.transformers_weights_transposed,
        "inference_mode": True,
    }
    export_transformers(loaded.base, out_dir / "base")
    try:
        adapter_dir = out_dir / "adapter"
        adapter_dir.mkdir()
        (adapter_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir

"""Export to Hugging Face ``transformers``: a BabyGPT checkpoint as a directory that
``transformers.AutoModelForCausalLM.from_pretrained`` loads and that gives the same logits.

- ``gpt`` becomes GPT-2 (``GPT2LMHeadModel``): the same modules under the same names, nanoGPT
  having borrowed them, except that GPT-2 stores its four projection matrices transposed (its
  ``Conv1D`` keeps weights as in x out). GPT-2 always has biases: a model without them gets zeros.
- ``llama`` becomes Llama (``LlamaForCausalLM``): the names are transformers' already, under
  ``model.``; the RoPE convention (rotate-half) is the same.
- A LoRA adapter is exported merged into its base: one plain model with the adapted weights;
  or, with ``export_peft``, as a PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``)
  beside its base in transformers' layout, which ``peft.PeftModel.from_pretrained`` puts back
  together with the same logits.

Only what GPT-2 can express is exported: a gpt with its MLP and LayerNorms, full-rank attention
and no time weighting (the attention-ladder presets and ``gpt-time-weighted`` are refused).
transformers is not needed to export, only to load the result. The tokenizer is not converted:
``tokenizer.json`` is copied as BabyGPT's own file, and the ids are BabyGPT's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import checkpoint
from .lora import LoRALinear, lora_layers
from .models import build_model, family_of
from .tokenizer import TOKENIZER_FILE

GPT2_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}


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
    if getattr(model.config, "tie_weights", False) and any(layer.tied for layer in lora_layers(model)):
        raise ValueError("the adapter changes a head tied to the embedding: it cannot be merged into one model")
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def gpt2(model) -> tuple[dict, dict]:
    c = model.config
    unsupported = [name for name, bad in (("feed_forward=False", not c.feed_forward), ("layer_norm=False", not c.layer_norm),
                                          ("time_weighting", c.time_weighting), (f"attn_rank={c.attn_rank}", c.attn_rank))
                   if bad]
    if unsupported:
        raise ValueError(f"GPT-2 has no equivalent of {', '.join(unsupported)}: only the full gpt block exports")
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
        "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
        "n_inner": 4 * c.n_embd, "activation_function": GPT2_ACTIVATIONS[c.activation], "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": c.tie_weights,
        "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",  # GPT-2's 50256 is not in our vocabulary
    }
    state = {}
    for name, value in model.state_dict().items():
        if c.tie_weights and name == "lm_head.weight":
            continue  # transformers ties it back to transformer.wte.weight
        state[name] = value.t() if name.endswith(GPT2_TRANSPOSED) else value
        if not c.bias and name.endswith(GPT2_TRANSPOSED):
            state[name[: -len("weight")] + "bias"] = torch.zeros(value.shape[0])
    if not c.bias:
        for i in range(c.n_layer):  # GPT-2's LayerNorms always have a bias too
            for norm in ("ln_1", "ln_2"):
                state.setdefault(f"transformer.h.{i}.{norm}.bias", torch.zeros(c.n_embd))
        state.setdefault("transformer.ln_f.bias", torch.zeros(c.n_embd))
    return config, state


def llama(model) -> tuple[dict, dict]:
    c = model.config
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd, "intermediate_size": c.hidden_size, "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head, "head_dim": c.head_dim,
        "max_position_embeddings": c.block_size, "rms_norm_eps": c.norm_eps, "hidden_act": "silu",
        "rope_parameters": {"rope_type": "default", "rope_theta": float(c.rope_theta)},
        "tie_word_embeddings": c.tie_weights, "attention_bias": False, "mlp_bias": False, "bos_token_id": None,
        "eos_token_id": None, "torch_dtype": "float32",
    }
    state = {}
    for name, value in model.state_dict().items():
        if c.tie_weights and name == "lm_head.weight":
            continue
        state[name if name.startswith("lm_head") else f"model.{name}"] = value
    return config, state


EXPORTERS = {"gpt": gpt2, "llama": llama}


def export_transformers(source, out_dir) -> Path:
    """Write ``config.json`` and ``model.safetensors`` in transformers' layout for the checkpoint
    ``source`` (a directory or a shipped name); ``out_dir`` must not exist yet."""
    source_dir = checkpoint.find_checkpoint(source)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"{out_dir} already exists; export into a new directory")
    loaded = checkpoint.load_checkpoint(source_dir)
    family = family_of(loaded.model.config)
    if family not in EXPORTERS:
        raise ValueError(f"transformers has no {family} model: only gpt (as GPT-2) and llama export")
    config, state = EXPORTERS[family](plain_model(loaded.model))
    tensors = {name: value.detach().to(torch.float32).contiguous().clone() for name, value in state.items()}
    out_dir.mkdir(parents=True)
    try:
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(checkpoint.find_checkpoint(loaded.base or source_dir) / TOKENIZER_FILE,
                        out_dir / "babygpt_tokenizer.json")
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # nothing half-written
        raise
    return out_dir


def hf_module_name(family: str, name: str) -> str:
    """A module's name in the exported transformers model."""
    return name if family == "gpt" or name.startswith("lm_head") else f"model.{name}"


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
    family = loaded.config["model"]["family"]
    tensors, targets, rank_pattern, alpha_pattern = {}, [], {}, {}
    for name, module in loaded.model.named_modules():
        if not isinstance(module, LoRALinear):
            continue
        hf_name = hf_module_name(family, name)
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
        "fan_in_fan_out": family == "gpt",  # GPT-2's Conv1D keeps weights as in x out
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

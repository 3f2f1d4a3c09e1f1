"""LoRA: a small trainable update on a frozen model (Hu et al. 2021), as in PEFT and litgpt.

A target Linear with weight ``W`` (out x in) becomes ``W + (alpha / r) * B @ A``: ``A`` (r x in) starts
random, ``B`` (out x r) starts at zero, so the adapted model equals its base until training moves
``B``. Everything else in the model is frozen. With ``r`` much smaller than ``in`` and ``out``, the
adapter is a few hundred KB where the model is MBs.

Targets, by their usual names: ``q``, ``k``, ``v`` (attention query/key/value), ``o`` (attention
output), ``mlp`` (every matrix of the MLP) and ``head`` (the output head). GPT computes q, k and v with
one fused matrix (``c_attn``); there each of them is a *part*, a block of that matrix's output rows
with its own ``A`` and ``B``, so ``q,v`` adapts exactly the query and value rows, as it would with
separate matrices.

``merge_lora`` folds ``B @ A`` into the base weights (sampling then costs what the base costs);
``unmerge_lora`` puts back the exact base weights, kept aside at merge time (subtracting the update
again would leave float rounding behind). A head tied to the token embedding cannot be merged:
the same matrix is the embedding, which the adapter does not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import FAMILIES, BaseConfig, HookPoint, LanguageModel, build_model, family_of

TARGETS = ("q", "k", "v", "o", "mlp", "head")


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "v")

    def validate(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive whole number, got {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be some of {', '.join(TARGETS)}; got "
                             f"{', '.join(self.targets) or 'none'}")

    @property
    def scale(self) -> float:
        return self.alpha / self.r


class LoRALinear(nn.Module):
    """A frozen Linear plus ``scale * B @ A`` on chosen blocks of its output rows (all rows by default)."""

    def __init__(self, base: nn.Linear, config: LoRAConfig, parts: dict[str, tuple[int, int]] | None = None,
                 tied: bool = False):
        super().__init__()
        self.base = base
        self.config = config
        self.scale = config.scale
        self.parts = parts or {"all": (0, base.out_features)}
        self.in_output_order = sorted(self.parts.items(), key=lambda item: item[1])  # [(name, (start, stop))]
        self.tied = tied  # the weight is also the token embedding: no merging
        self.dropout = nn.Dropout(config.dropout)
        weight = base.weight
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for name, (start, stop) in self.parts.items():
            a = torch.empty(config.r, base.in_features, device=weight.device, dtype=weight.dtype)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's and litgpt's choice for A
            self.lora_A[name] = nn.Parameter(a)
            b = torch.zeros(stop - start, config.r, device=weight.device, dtype=weight.dtype)
            self.lora_B[name] = nn.Parameter(b)
        self.kept_base_weight: torch.Tensor | None = None  # set while merged
        # W·x and the adapter's scale·B·A·x, named after the module's place once it is in a model
        self.hook_base, self.hook_update = HookPoint("lora.base"), HookPoint("lora.update")

    def name_hooks(self, path: str) -> None:
        self.hook_base.name, self.hook_update.name = f"{path}.base", f"{path}.update"

    @property
    def weight(self) -> torch.Tensor:  # the model reads lm_head.weight for its dtype and device
        return self.base.weight

    @property
    def merged(self) -> bool:
        return self.kept_base_weight is not None

    def delta(self) -> torch.Tensor:
        """The whole (out, in) update ``scale * B @ A``, zero outside the adapted rows."""
        update = torch.zeros_like(self.base.weight)
        for name, (start, stop) in self.parts.items():
            update[start:stop] = self.scale * (self.lora_B[name] @ self.lora_A[name])
        return update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        y = self.hook_base(y)
        h = self.dropout(x)
        pieces, filled = [], 0  # the update's columns, in output order, zeros between the parts
        for name, (start, stop) in self.in_output_order:
            if start > filled:
                pieces.append(y.new_zeros(*y.shape[:-1], start - filled))
            pieces.append(F.linear(F.linear(h, self.lora_A[name]), self.lora_B[name]))  # B·(A·x)
            filled = stop
        if filled < y.size(-1):
            pieces.append(y.new_zeros(*y.shape[:-1], y.size(-1) - filled))
        # one multiplication by the scale for all the parts: at one token a step, each operation's
        # own cost is most of what an adapter adds
        update = (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)) * self.scale
        return y + self.hook_update(update)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        if self.tied:
            raise ValueError("cannot merge a LoRA head that is tied to the token embedding: merging would "
                             "change the embedding too; sample unmerged, or adapt an untied model")
        self.kept_base_weight = self.base.weight.detach().clone()
        self.base.weight += self.delta()

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight.copy_(self.kept_base_weight)
            self.kept_base_weight = None


def apply_lora(model: LanguageModel, config: LoRAConfig) -> LanguageModel:
    """Freeze ``model`` and wrap its target Linears with adapters, in place; returns the model.

    Where the targets sit is the family's own answer (``model.lora_sites``)."""
    config.validate()
    check_supported(model)
    if lora_config(model) is not None:
        raise ValueError("this model already has LoRA adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    for parent, attribute, parts, tied in model.lora_sites(set(config.targets)):
        setattr(parent, attribute, LoRALinear(getattr(parent, attribute), config, parts, tied))
    for path, module in model.named_modules():
        if isinstance(module, LoRALinear):
            module.name_hooks(path)
    return model


def check_supported(model: LanguageModel) -> None:
    """Refuse a model whose family has nowhere for adapters to sit."""
    if not model.lora_targets:
        adaptable = ", ".join(family.name for family in FAMILIES.values() if family.lora_targets)
        raise ValueError(f"LoRA adapts the attention families ({adaptable}), not {family_of(model.config)!r}")


def lora_config(model: nn.Module) -> LoRAConfig | None:
    """The settings of the adapters on ``model``, or None when it has none."""
    return next((layer.config for layer in lora_layers(model)), None)


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def lora_hook_sites(model: nn.Module) -> list[str]:
    """The module paths of the unmerged adapters, whose ``{path}.base`` and ``{path}.update`` hook
    points a forward pass can keep."""
    return [layer.hook_base.name[: -len(".base")] for layer in lora_layers(model) if not layer.merged]


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (``...lora_A.q``, ``...lora_B.q``, ...)."""
    return {name: p.detach() for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name}


def trainable_parameters(model: nn.Module) -> dict:
    """Counts like PEFT's ``print_trainable_parameters`` (a tied weight counted once)."""
    params = list(model.parameters())  # named_parameters()/parameters() already skip shared tensors
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    share = trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "share": share,
            "text": f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * share:.4f}"}


def adapter_parameters(model_config: BaseConfig, config: LoRAConfig) -> dict:
    """``trainable_parameters`` of a model of ``model_config`` with these adapters, counted on the
    meta device: no weights are made, so the app can show it before anything is trained."""
    with torch.device("meta"):
        model = apply_lora(build_model(model_config), config)
    return trainable_parameters(model)

"""Muon beside AdamW, stepped as one optimizer.

Muon (``torch.optim.Muon``) replaces each update of a 2-D weight matrix by the nearest
orthogonal matrix (a few Newton–Schulz iterations on the momentum), so every direction of the
matrix moves by the same amount. It only makes sense for the matrices inside the model: the
embedding table (a lookup, one row per token), the output head, norm gains and biases keep AdamW,
as the modded-nanogpt speedrun does. With ``adjust_lr_fn="match_rms_adamw"`` Muon scales its
update to the size an AdamW update would have, so both parts share one learning rate and one
schedule.

``torch.optim.Muon`` runs the orthogonalisation in bfloat16, which a GPU or a CPU with bf16
instructions multiplies fast; a CPU without them emulates it, about 13 times slower than an AdamW
step at the ``gpt`` preset's size. ``Muon`` below is torch's with the orthogonalisation in a
chosen dtype, float32 on such a CPU (same updates otherwise: tested against torch's).

The trainer and the checkpoint code see one object with the optimizer interface they use:
``param_groups``, ``zero_grad``, ``step`` and a ``state_dict`` in torch's layout (parameters
numbered across both parts, AdamW's first), so saving and resuming are the same code as for AdamW.
"""

from __future__ import annotations

import math

import torch

from .machine import bf16_trains_fast


def orthogonalised(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                   dtype: torch.dtype) -> torch.Tensor:
    """The nearly orthogonal matrix Newton–Schulz makes of ``update`` (torch's quintic iteration),
    computed in ``dtype``: X <- aX + (bA + cA²)X with A = XXᵀ, after scaling X to spectral norm ≤ 1."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = update.size(0) > update.size(1)
    if tall:  # iterate on the wide side: A is the smaller square
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def orthogonalising_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where it is multiplied natively (torch's choice), float32 where it would be emulated."""
    return torch.bfloat16 if device.type == "cuda" or bf16_trains_fast() else torch.float32


class Muon(torch.optim.Muon):
    """``torch.optim.Muon`` with its orthogonalisation in ``orthogonalise_in`` (the same update rule:
    Nesterov momentum, decoupled weight decay, the learning rate adjusted by the matrix's shape)."""

    def __init__(self, params, orthogonalise_in: torch.dtype = torch.bfloat16, **settings):
        super().__init__(params, **settings)
        self.orthogonalise_in = orthogonalise_in

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad, memory_format=torch.preserve_format)
                buffer = state["momentum_buffer"]
                buffer.lerp_(param.grad, 1 - group["momentum"])
                update = param.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                update = orthogonalised(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                        self.orthogonalise_in)
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update.to(param.dtype), alpha=-group["lr"] * shape_factor(group["adjust_lr_fn"], param))


def shape_factor(adjust_lr_fn: str | None, param: torch.Tensor) -> float:
    """torch's learning-rate adjustment by shape: ``match_rms_adamw`` gives updates the RMS of AdamW's."""
    rows, columns = param.shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1, rows / columns))
    return 1.0


class MuonWithAdamW:
    def __init__(self, adamw: torch.optim.AdamW, muon: torch.optim.Muon):
        self.parts = [adamw, muon]

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts for group in part.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for part in self.parts:
            saved = part.state_dict()
            state.update({offset + index: values for index, values in saved["state"].items()})
            groups += [{**group, "params": [offset + i for i in group["params"]]} for group in saved["param_groups"]]
            offset += sum(len(group["params"]) for group in saved["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups, first_group, offset = state_dict["param_groups"], 0, 0
        if len(groups) != len(self.param_groups):
            raise ValueError(f"the saved optimizer has {len(groups)} parameter groups, Muon with AdamW has "
                             f"{len(self.param_groups)}: it was saved by another optimizer")
        for part in self.parts:
            own = groups[first_group : first_group + len(part.param_groups)]
            count = sum(len(group["params"]) for group in own)
            part.load_state_dict({
                "state": {i - offset: v for i, v in state_dict["state"].items() if offset <= i < offset + count},
                "param_groups": [{**group, "params": [i - offset for i in group["params"]]} for group in own],
            })
            first_group, offset = first_group + len(own), offset + count

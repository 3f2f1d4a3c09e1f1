"""Muon beside AdamW, stepped as one optimizer.

Muon (``torch.optim.Muon``) replaces each update of a 2-D weight matrix by the nearest
orthogonal matrix (a few Newton–Schulz iterations on the momentum), so every direction of the
matrix moves by the same amount. It only makes sense for the matrices inside the model: the
embedding table (a lookup, one row per token), the output head, norm gains and biases keep AdamW,
as the modded-nanogpt speedrun does. With ``adjust_lr_fn="match_rms_adamw"`` Muon scales its
update to the size an AdamW update would have, so both parts share one learning rate and one
schedule.

The trainer and the checkpoint code see one object with the optimizer interface they use:
``param_groups``, ``zero_grad``, ``step`` and a ``state_dict`` in torch's layout (parameters
numbered across both parts, AdamW's first), so saving and resuming are the same code as for AdamW.
"""

from __future__ import annotations

import torch


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

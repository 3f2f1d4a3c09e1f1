"""LSTM: Karpathy's char-rnn, the model Tiny Shakespeare was made for.

Token embedding -> ``n_layer`` stacked LSTM layers -> a linear head. An LSTM reads the text one
token at a time and carries two vectors from step to step, the hidden state ``h`` (what it shows
the next layer and the head) and the cell state ``c`` (its memory). At step t, from the input x_t
and the previous h, four gates are computed, each a vector of ``n_hidden`` numbers:

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate: how much new to write
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate: how much memory to keep
    g_t =    tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)    cell candidate: what to write
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate: how much memory to show
    c_t = f_t * c_{t-1} + i_t * g_t                          the memory, partly kept, partly new
    h_t = o_t * tanh(c_t)                                    what the layer outputs

(``*`` is element by element; the four W_i. are stacked as ``torch.nn.LSTM``'s ``weight_ih_l{k}``,
in the order i, f, g, o.) ``spelled_out`` computes exactly this, step by step; the fast path hands
the same weights to ``torch.nn.LSTM`` (one fused oneDNN kernel per layer on a CPU), and a test
holds the two equal, as gpt's explicit attention is held equal to its fused kernel.

The model has no window: the state carries the whole text, so it reads prompts of any length
(``max_context`` is None) and generation keeps the state as its cache, one token a step, never
re-encoding. ``block_size`` is only how long the training sequences are (truncated
backpropagation through time, each sequence from a zero state).

Hook points (``run_with_cache``): ``embed`` (B, T, n_embd); per layer k ``layers.{k}.input_gate``,
``forget_gate``, ``cell_candidate``, ``output_gate``, ``cell`` and ``hidden`` (each B, T, n_hidden;
asking for any of them runs the spelled-out path); ``logits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    BaseConfig,
    Family,
    HookPoint,
    LanguageModel,
    SavedActivations,
    check_fraction,
    check_int,
    head_and_loss_bytes,
)
from .stages import Figure, InsideView, Stage, logits_card, norm, per_cent, shown

GATES = ("input_gate", "forget_gate", "cell_candidate", "output_gate")


@dataclass
class LSTMConfig(BaseConfig):
    n_layer: int = field(default=2, metadata={"help": "stacked LSTM layers"})
    n_embd: int = field(default=128, metadata={"help": "width of the token embedding (the first layer's input)"})
    n_hidden: int = field(default=0, metadata={"help": "size of each layer's hidden and cell state (0 = n_embd)"})
    dropout: float = field(default=0.0,
                           metadata={"help": "dropout on the embedding, between layers and before the head"})

    form_fields = ("n_layer", "n_embd", "block_size", "dropout")

    def validate(self) -> None:
        super().validate()
        check_int(self, "n_layer", minimum=1)
        check_int(self, "n_embd", minimum=1)
        check_int(self, "n_hidden", minimum=0)
        check_fraction(self, "dropout")

    @property
    def hidden_size(self) -> int:
        return self.n_hidden or self.n_embd

    def in_words(self) -> str:
        layers = "1 LSTM layer" if self.n_layer == 1 else f"{self.n_layer} stacked LSTM layers"
        return (f"everything read so far, as a memory of {self.hidden_size} numbers that {layers} update at each "
                f"token (trained over {self.block_size} tokens at a time)")


class LSTMState:
    """Generation's cache for an LSTM: every layer's last hidden and cell state, (n_layer, B, H) each."""

    kind = "recurrent state"  # h and c of every layer

    def __init__(self, n_layer: int, batch_size: int, hidden: int, device=None, dtype=torch.float32):
        self.h = torch.zeros(n_layer, batch_size, hidden, device=device, dtype=dtype)
        self.c = torch.zeros_like(self.h)
        self.length = 0  # tokens read so far

    def reset(self) -> None:
        self.h.zero_()
        self.c.zero_()
        self.length = 0

    def nbytes(self) -> int:
        return 2 * self.h.numel() * self.h.element_size()


class LSTM(LanguageModel):
    generates_in_bf16 = False  # the recurrence stays fp32 (see forward), so its weights must too

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        H = config.hidden_size
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        # torch.nn.LSTM's own dropout sits between layers, never after the last one
        self.lstm = nn.LSTM(config.n_embd, H, config.n_layer, batch_first=True, dropout=config.dropout)
        self.head = nn.Linear(H, config.vocab_size)
        self.hook_embed, self.hook_logits = HookPoint("embed"), HookPoint("logits")
        self.layer_hooks = {(k, name): HookPoint(f"layers.{k}.{name}")
                            for k in range(config.n_layer) for name in (*GATES, "cell", "hidden")}

    @property
    def max_context(self) -> int | None:
        return None  # the state carries the whole text

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: LSTMState | None = None,
                last_position_only: bool = False):
        self.check_input(idx)
        x = self.drop(self.hook_embed(self.embedding(idx)))  # (B, T, n_embd)
        state = (cache.h, cache.c) if cache is not None and cache.length else None
        # The recurrence stays fp32 under bf16 autocast: oneDNN's bf16 LSTM needs bf16 instructions
        # many CPUs lack, and an error in the state would compound over every later step.
        with torch.autocast(device_type=idx.device.type, enabled=False):
            if any(point.asked for point in self.layer_hooks.values()):
                h, (h_n, c_n) = self.spelled_out(x.float(), state)
            else:
                h, (h_n, c_n) = self.lstm(x.float(), state)  # (B, T, H)
        if cache is not None:
            cache.h, cache.c = h_n, c_n
            cache.length += idx.size(1)
        if last_position_only:  # the recurrence ran over every position; the head needs only the last
            h = h[:, -1:]
        logits = self.hook_logits(self.head(self.drop(h)))
        return logits, self.loss(logits, targets)

    def spelled_out(self, x: torch.Tensor, state=None):
        """The equations of the module docstring, one step at a time, with ``torch.nn.LSTM``'s
        weights: the same ``(output, (h_n, c_n))``."""
        B, T, _ = x.shape
        H = self.config.hidden_size
        last_h, last_c = [], []
        for k in range(self.config.n_layer):
            w_ih, w_hh = getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}")
            bias = getattr(self.lstm, f"bias_ih_l{k}") + getattr(self.lstm, f"bias_hh_l{k}")
            h = state[0][k] if state is not None else x.new_zeros(B, H)
            c = state[1][k] if state is not None else x.new_zeros(B, H)
            from_input = x @ w_ih.T + bias  # (B, T, 4H): the input's share of every step's gates at once
            steps = {name: [] for name in (*GATES, "cell", "hidden")}
            for t in range(T):
                pre = (from_input[:, t] + h @ w_hh.T).chunk(4, dim=-1)  # 4 x (B, H)
                i, f, g, o = torch.sigmoid(pre[0]), torch.sigmoid(pre[1]), torch.tanh(pre[2]), torch.sigmoid(pre[3])
                c = f * c + i * g
                h = o * torch.tanh(c)
                for name, value in zip(steps, (i, f, g, o, c, h)):
                    steps[name].append(value)
            outputs = {name: self.layer_hooks[k, name](torch.stack(values, dim=1)) for name,
                       values in steps.items()}  # (B, T, H)
            x = outputs["hidden"]
            if k < self.config.n_layer - 1:
                x = F.dropout(x, self.config.dropout, self.training)
            last_h.append(h)
            last_c.append(c)
        return x, (torch.stack(last_h), torch.stack(last_c))

    # --- generation -----------------------------------------------------------------------------

    def new_cache(self, batch_size: int = 1) -> LSTMState:
        weight = self.head.weight
        return LSTMState(self.config.n_layer, batch_size, self.config.hidden_size, weight.device, torch.float32)

    # --- inside, stage by stage ----------------------------------------------------------------

    def inside_choices(self) -> tuple[int, int]:
        return self.config.n_layer, 0

    def inside_stages(self, view: InsideView) -> list[Stage]:
        c, k, p = self.config, view.layer, view.position
        embedding = view.at("embed")
        stages = [Stage("embedding", "Token embedding", [
            f"{shown(view.token)} is token {view.ids[p]}: its row of the {c.vocab_size} × {c.n_embd} embedding table "
            f"is a vector of {c.n_embd} numbers (norm {norm(embedding):.2f}).",
            "There are no positions: the LSTM reads the tokens in order, one step each, and its state carries "
            "what came before.",
        ], [Figure("vector", f"token embedding of {shown(view.token)}", embedding)])]
        gate = {name: view.at(f"layers.{k}.{name}") for name in (*GATES, "cell", "hidden")}
        cells = view.row(f"layers.{k}.cell")  # (T, H)
        before = cells[p - 1] if p else torch.zeros_like(cells[p])
        source = "the embedding" if k == 0 else f"layer {k - 1}'s hidden state"
        stages.append(Stage(f"layers.{k} gates", f"Layer {k}: the four gates at step {p}", [
            f"From {source} and its own previous hidden state, layer {k} computes four gates of {c.hidden_size} "
            f"numbers at {shown(view.token)}. The forget gate keeps {per_cent(float(gate['forget_gate'].mean()))} of "
            f"the memory on average, the input gate writes {per_cent(float(gate['input_gate'].mean()))} of the "
            f"candidate, and the output gate shows {per_cent(float(gate['output_gate'].mean()))}.",
            f"{per_cent(float((gate['forget_gate'] > 0.9).float().mean()))} of the cells keep more than 90 % of their "
            f"memory; {per_cent(float((gate['forget_gate'] < 0.1).float().mean()))} forget more than 90 %.",
        ], [Figure("vector", "input gate i (sigmoid)", gate["input_gate"]),
            Figure("vector", "forget gate f (sigmoid)", gate["forget_gate"]),
            Figure("vector", "cell candidate g (tanh)", gate["cell_candidate"]),
            Figure("vector", "output gate o (sigmoid)", gate["output_gate"])]))
        stages.append(Stage(f"layers.{k} state", f"Layer {k}: the cell state and the hidden state", [
            f"The memory is updated as c = f × c_before + i × g: its norm goes from {norm(before):.2f} to "
            f"{norm(gate['cell']):.2f} at {shown(view.token)}. The layer shows h = o × tanh(c), norm "
            f"{norm(gate['hidden']):.2f}, to " + ("the next layer." if k < c.n_layer - 1 else "the output head."),
        ], [Figure("vector", "cell state before", before), Figure("vector", "cell state after", gate["cell"]),
            Figure("vector", "hidden state h", gate["hidden"]),
            Figure("heatmap", "the cell state over the prompt (row: step)", cells,
                   y=[shown(t) for t in view.tokens])]))
        stages.append(logits_card(view, None))
        return stages

    @torch.no_grad()
    def recompose(self, ids: torch.Tensor, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        x = kept["embed"]  # (1, T, n_embd)
        T, H = x.size(1), self.config.hidden_size
        for k in range(self.config.n_layer):
            w_ih, w_hh = getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}")
            bias = getattr(self.lstm, f"bias_ih_l{k}") + getattr(self.lstm, f"bias_hh_l{k}")
            h, c = x.new_zeros(1, H), x.new_zeros(1, H)
            steps = {name: [] for name in (*GATES, "cell", "hidden")}
            for t in range(T):
                pre = x[:, t] @ w_ih.T + h @ w_hh.T + bias
                i, f = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H : 2 * H])
                g, o = torch.tanh(pre[:, 2 * H : 3 * H]), torch.sigmoid(pre[:, 3 * H :])
                c = f * c + i * g
                h = o * torch.tanh(c)
                for name, value in zip(steps, (i, f, g, o, c, h)):
                    steps[name].append(value)
            for name, values in steps.items():
                out[f"layers.{k}.{name}"] = torch.stack(values, dim=1)
            x = out[f"layers.{k}.hidden"]
        out["logits"] = self.head(x)
        return out

    # --- counting -------------------------------------------------------------------------------

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"token embedding": [self.embedding.weight]}
        for k in range(self.config.n_layer):
            groups[f"layer {k} LSTM"] = [getattr(self.lstm, f"{kind}_l{k}")
                                         for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        groups["output head"] = list(self.head.parameters())
        return groups

    def matrices(self) -> list[nn.Parameter]:
        lstm = [getattr(self.lstm, f"{kind}_l{k}") for k in range(self.config.n_layer) for kind in ("weight_ih",
                                                                                                    "weight_hh")]
        return [*lstm, self.head.weight]

    def flop_formulas(self) -> dict:
        return {torch.ops.aten.mkldnn_rnn_layer: rnn_layer_flops,
                torch.ops.aten.mkldnn_rnn_layer_backward: rnn_layer_backward_flops}

    def saved_activations(self, bytes_per_value: int) -> SavedActivations:
        """Per layer and token, what the fused kernel keeps (measured against torch's saved tensors):
        its input and output, oneDNN's workspace (the gates, and states laid out for the backward
        pass, rows padded as oneDNN pads them), and the first and last h and c of each sequence
        (divided over its ``block_size`` tokens). The recurrence is fp32 even under autocast."""
        config, f, c = self.config, 4, bytes_per_value
        E, H, L, T = config.n_embd, config.hidden_size, config.n_layer, config.block_size
        widest = (onednn_row(max(E, H)) + (L - 1) * onednn_row(H)) / L  # the first layer reads E wide
        drop = config.dropout > 0
        rows = {
            # the first layer's input, as a time-major copy; every layer's output (the next one's input)
            "layer inputs and outputs": E * f / L + H * f,
            "oneDNN workspace: gates and outputs": (onednn_row(4 * H) + H) * f,
            "oneDNN workspace: states for the backward pass": 2 * (3 * widest + 2 * H) * f * (T + 1) / T,
            "first and last h and c of each sequence": 4 * H * f / T,
        }
        if drop and L > 1:
            rows["dropout between layers (mask and output)"] = 2 * H * f * (L - 1) / L
        outside = 8 + (E * f + H * f if drop else 0)  # token ids; the masks of the embedding's and the head's dropout
        return SavedActivations(rows, L, outside + head_and_loss_bytes(H, config.vocab_size, c))

    def autocast_weight_bytes(self) -> int:
        return 2 * self.head.weight.numel()  # the recurrence is never cast: only the head gets a bf16 copy

    def to_transformers(self):
        raise ValueError("transformers has no lstm model: its language models are transformers, so there is "
                         "nothing to export an LSTM into (gpt and llama export)")


def onednn_row(width: int) -> int:
    """oneDNN's padded row length: a multiple of 16 floats (64 bytes), never a multiple of 256
    (which would make rows alias in a 4 KiB cache set)."""
    padded = -(-width // 16) * 16
    return padded + 16 if padded % 256 == 0 else padded


def rnn_layer_flops(input_shape, weight_ih_shape, weight_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """One LSTM layer over (T, B, I): every token multiplies both stacked gate matrices once."""
    tokens = input_shape[0] * input_shape[1]
    return 2 * tokens * (weight_ih_shape[0] * weight_ih_shape[1] + weight_hh_shape[0] * weight_hh_shape[1])


def rnn_layer_backward_flops(input_shape, weight_ih_shape, weight_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """Gradients with respect to the inputs and to the weights: two products of the forward's size."""
    return 2 * rnn_layer_flops(input_shape, weight_ih_shape, weight_hh_shape)


PRESETS = {
    # char-rnn's shape (2 layers of 256; a 128-wide embedding where char-rnn fed one-hot characters),
    # for the same 2,000 steps as the ladder's CPU recipe.
    "lstm": {"model": {"n_layer": 2, "n_embd": 128, "n_hidden": 256, "block_size": 64},
             "train": {"batch_size": 16, "learning_rate": 3e-3, "max_iters": 2000, "warmup_iters": 100},
             "builds_on": "ngram"},
}

FAMILY = Family("lstm", LSTMConfig, LSTM, PRESETS, "char-rnn: stacked LSTM layers carrying a hidden and a cell state")

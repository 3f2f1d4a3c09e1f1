"""The trainer: one loop that yields events. The CLI and the app render the same events.

``Trainer.run()`` is a generator of ``TrainEvent``: a ``"step"`` after every optimizer step, an
``"eval"`` every ``eval_interval`` steps (train and val loss, a sample), and a final ``"done"``.
``Trainer.stop()`` (from any thread) ends the run after the current step; the run then evaluates,
saves and finishes normally, so a stopped run always leaves a valid checkpoint.

Exact resume: the batch order comes from a ``torch.Generator`` whose state is saved with the
weights, the AdamW moments and the global RNG (dropout), and the learning rate is a function of
the step. A run stopped at step k and resumed therefore computes the same losses as one that
never stopped. Evaluation and samples use their own generators, so they never shift that stream.

Data parallel: under ``torchrun`` every process draws the same global batch and trains on its
rows ``rank::world_size``; DDP averages the gradients, so without dropout N processes of batch
B/N follow the same curve as one process of batch B. Each process draws its own dropout masks
(seed + rank), and each one's RNG state is saved, so a DDP run resumes exactly too.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from . import checkpoint
from .attention import attention_weights
from .data import Dataset
from .evaluation import addition_accuracy, loss_over
from .machine import matmul_peak_flops
from .models import LanguageModel
from .models.base import check_choice, check_int, config_from_dict
from .muon import Muon, MuonWithAdamW, orthogonalising_dtype
from .sampling import generate
from .stats import flops_per_token, model_flops_utilisation

OPTIMIZERS = ("adamw", "muon")


@dataclass
class TrainConfig:
    batch_size: int = field(default=12, metadata={"help": "sequences per optimizer step (all processes together)"})
    max_iters: int = field(default=2000, metadata={"help": "optimizer steps to train for"})
    max_seconds: float = field(default=0.0, metadata={"help": "wall-clock budget in seconds (0 = none)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    min_lr: float = field(default=1e-4, metadata={"help": "learning rate at the end of the cosine decay"})
    warmup_iters: int = field(default=100, metadata={"help": "steps of linear warmup"})
    lr_decay_iters: int = field(default=0, metadata={"help": "steps of cosine decay (0 = max_iters)"})
    decay_by_clock: bool = field(default=False,
                                 metadata={"help": "decay over the time budget (max_seconds) or the steps, whichever "
                                                   "ends first, so the schedule ends when the run does on any machine"})
    stable_fraction: float = field(default=0.0,
                                   metadata={"help": "share of the schedule held at the peak before a linear decay "
                                                     "(warmup-stable-decay); 0 = cosine decay all along"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw, or muon: Muon for the hidden weight "
                                                              "matrices, AdamW for the rest"})
    weight_decay: float = field(default=0.1, metadata={"help": "weight decay on the weight matrices"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0 = off)"})
    eval_interval: int = field(default=250, metadata={"help": "evaluate every this many steps"})
    eval_iters: int = field(default=20, metadata={"help": "batches per evaluation, per split"})
    eval_at_start: bool = field(default=False,
                                metadata={"help": "evaluate before the first step too (a fine-tune's starting point)"})
    attention_snapshots: bool = field(default=False,
                                      metadata={"help": "keep every head's attention on a fixed probe (the val "
                                                        "split's first window) at each evaluation"})
    sample_tokens: int = field(default=200, metadata={"help": "tokens sampled at each evaluation (0 = none)"})
    dtype: str = field(default="float32", metadata={"help": "float32, or bfloat16 autocast (CPU and CUDA)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (slow start, faster steps)"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch (0 = torch's default)"})
    seed: int = field(default=1337, metadata={"help": "seed of initialisation, batch order and samples"})

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_iters", "eval_interval", "eval_iters"):
            check_int(self, name, minimum=1)
        for name in ("warmup_iters", "lr_decay_iters", "sample_tokens", "threads", "seed"):
            check_int(self, name, minimum=0)
        for name in ("learning_rate", "min_lr", "max_seconds", "weight_decay", "grad_clip", "beta1", "beta2",
                     "stable_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"min_lr must be between 0 and learning_rate ({self.learning_rate}), got {self.min_lr}")
        for name in ("max_seconds", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "stable_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        check_choice(self, "dtype", ("float32", "bfloat16"))
        check_choice(self, "optimizer", OPTIMIZERS)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return config_from_dict(cls, values)


@dataclass
class TrainEvent:
    """What the loop reports. ``kind`` is "step", "eval" or "done"; unused fields stay None."""

    kind: str
    step: int
    max_iters: int
    elapsed: float
    tokens_seen: int
    loss: float | None = None
    lr: float | None = None
    tokens_per_sec: float | None = None
    mfu: float | None = None  # model FLOPs utilisation: training FLOPs/s over this machine's matmul peak
    eta: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    sample: str | None = None
    other_val_loss: dict[str, float] | None = None  # eval: val loss on the other corpora, by name
    accuracy: float | None = None  # eval, a task with answers (addition): exact-match share of val problems
    reason: str | None = None  # done: "max_iters", "max_seconds" or "stopped"
    checkpoint: str | None = None


def pick_device(name: str = "auto") -> torch.device:
    """auto picks cuda > mps > cpu; a named device must exist on this machine."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(name)):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ValueError(f"device {name} is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps is not available on this machine")
    return device


def learning_rate(step: int, config: TrainConfig, seconds: float = 0.0) -> float:
    """Linear warmup to the peak, then cosine decay to ``min_lr`` (nanoGPT's schedule).

    ``seconds`` is the time this session has trained. With ``decay_by_clock`` and a time budget the
    decay's progress is the larger of the share of ``max_seconds`` spent and the share of the steps
    done, so a run cut by its budget has still annealed, on a slow machine or a fast one. With
    ``stable_fraction`` the peak is held for that share and the rest decays linearly
    (warmup-stable-decay, as in the modded-nanogpt speedrun).
    """
    if step < config.warmup_iters:
        return config.learning_rate * (step + 1) / (config.warmup_iters + 1)
    decay_iters = config.lr_decay_iters or config.max_iters
    progress = (step - config.warmup_iters) / max(1, decay_iters - config.warmup_iters)
    if config.decay_by_clock and config.max_seconds:
        progress = max(progress, seconds / config.max_seconds)
    progress = min(1.0, progress)
    if config.stable_fraction:
        left = min(1.0, (1.0 - progress) / (1.0 - config.stable_fraction))
        return config.min_lr + left * (config.learning_rate - config.min_lr)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.learning_rate - config.min_lr)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW that decays the weight matrices only (the family's ``matrices()``): never biases, norm
    gains, embedding tables or a head tied to one. With ``optimizer="muon"`` the family's
    ``hidden_matrices()`` go to Muon instead (``babygpt.muon``), decayed too, and AdamW keeps the rest.

    Every group says whether it is ``decayed`` (a resumed run sets those to its own weight decay).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    to_muon = set()
    if config.optimizer == "muon":
        to_muon = {id(p) for p in model.hidden_matrices() if p.requires_grad}
        if not to_muon:
            raise ValueError(f"muon has no weight matrices to train inside this {type(model).__name__} (a lookup "
                             "table, or a frozen base under a LoRA adapter); train it with adamw")
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decayed = {id(p) for p in model.matrices()} - embeddings - to_muon
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": config.weight_decay, "decayed": True},
        {"params": [p for p in params if id(p) not in decayed | to_muon], "weight_decay": 0.0, "decayed": False},
    ]
    # The fused kernel exists for CPU and CUDA tensors and is much faster than the loop.
    adamw = torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), fused=device.type in ("cpu", "cuda")
    )
    if not to_muon:
        return adamw
    hidden = [{"params": [p for p in params if id(p) in to_muon], "decayed": True}]
    muon = Muon(hidden, orthogonalising_dtype(device), lr=config.learning_rate, weight_decay=config.weight_decay,
                adjust_lr_fn="match_rms_adamw")
    return MuonWithAdamW(adamw, muon)


class Trainer:
    def __init__(
        self,
        model: LanguageModel,
        tokenizer,
        dataset: Dataset,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        run_info: dict | None = None,
        other_val_sets: dict[str, Dataset] | None = None,
        val_problems: list[str] | None = None,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.dataset = dataset
        # Corpora whose val loss every evaluation also reports: a fine-tune's base corpus shows
        # how much of it the model forgets.
        self.other_val_sets = other_val_sets or {}
        # A task with one right answer per line (the addition corpus): each evaluation also
        # greedy-decodes these val lines' answers and reports the share exactly right.
        self.val_problems = val_problems or []
        self.out_dir = Path(out_dir) if out_dir else None
        self.run_info = run_info or {}  # extra config.json entries: corpus name, preset…
        self.device = pick_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.model, config, self.device)
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        # MFU (babygpt.stats.model_flops_utilisation): training FLOPs per token, frozen weights
        # included (a LoRA fine-tune's figure counts the full model's work), against this machine's
        # matmul peak (measured once, then cached) times the processes.
        self.flops_per_token = flops_per_token(model.config)["training"]
        peak_dtype = torch.bfloat16 if config.dtype == "bfloat16" else torch.float32
        self.peak_flops = matmul_peak_flops(self.device, peak_dtype) * self.world_size
        if config.batch_size % self.world_size:
            raise ValueError(f"batch_size {config.batch_size} must be divisible by the {self.world_size} processes")
        self.batch_generator = torch.Generator().manual_seed(config.seed)
        if self.world_size > 1:  # the same weights everywhere (DDP copies rank 0's), own dropout masks
            torch.manual_seed(config.seed + self.rank)
        self.step = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self.best_val_loss = math.inf
        self.history: list[dict] = []
        self.writer = checkpoint.RunWriter(self.out_dir, tokenizer) if self.out_dir is not None else None
        self.attention_snapshots: dict[int, torch.Tensor] = {}  # step -> (layers, heads, T, T)
        self._stop = threading.Event()

    # --- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to finish after the current step (thread-safe); asked before ``run()``
        starts, the run stops after its first step.

        Use this rather than abandoning the ``run()`` generator: a stopped run evaluates and
        saves before it ends, an abandoned one keeps only what its last evaluation saved.
        """
        self._stop.set()

    def resume(self) -> None:
        """Continue from ``out_dir``'s training state: weights, optimizer, RNG, counters, history."""
        if self.out_dir is None:
            raise ValueError("resume needs the run's out_dir")
        # which groups take the weight decay, by position, from the optimizer as made (not as saved)
        decayed = [i for i, group in enumerate(self.optimizer.param_groups) if group.get("decayed")]
        state, rng = checkpoint.load_training_state(self.out_dir, self.model, self.optimizer)
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.train_seconds, self.history = state["train_seconds"], state["history"]
        self.best_val_loss = state["best_val_loss"] if state["best_val_loss"] is not None else math.inf
        # The saved hyperparameters are the old run's; this run's settings win (lr is set per step).
        for i, group in enumerate(self.optimizer.param_groups):
            if "betas" in group:  # AdamW's groups (Muon has a momentum instead)
                group["betas"] = (self.config.beta1, self.config.beta2)
            if i in decayed:
                group["weight_decay"] = self.config.weight_decay
        self.batch_generator.set_state(rng["batch_generator"])
        if f"torch.{self.rank}" in rng:
            torch.set_rng_state(rng[f"torch.{self.rank}"])
        else:  # resumed with more processes than saved: a fresh, still distinct dropout stream
            torch.manual_seed(self.config.seed + self.rank + self.step)
        if f"cuda.{self.rank}" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng[f"cuda.{self.rank}"], self.device)
        if checkpoint.has_attention_snapshots(self.out_dir):
            _, self.attention_snapshots = checkpoint.load_attention_snapshots(self.out_dir)

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> Iterator[TrainEvent]:
        try:
            yield from self._run()
        finally:
            self._stop.clear()  # a request is used up by the run it ended; the next run starts clean

    def _run(self) -> Iterator[TrainEvent]:
        config = self.config
        train_model = self.wrapped_for_training()
        tokens_per_step = config.batch_size * self.model.config.block_size
        start_time = time.perf_counter() - self.train_seconds
        session_start, session_start_step = time.perf_counter(), self.step
        step_seconds = None  # moving average, for tokens/s and ETA
        reason, last_eval_step = "max_iters", None
        self.model.train()
        if config.eval_at_start and self.step == 0:
            yield self.evaluate_and_save()
            last_eval_step = 0
        while self.step < config.max_iters:
            tick = time.perf_counter()
            lr = learning_rate(self.step, config, self.clock(tick - session_start))
            loss_value = self.train_step(train_model, lr)
            now = time.perf_counter()
            self.step += 1
            self.tokens_seen += tokens_per_step
            self.train_seconds = now - start_time
            step_seconds = now - tick if step_seconds is None else 0.9 * step_seconds + 0.1 * (now - tick)
            eta = (config.max_iters - self.step) * step_seconds
            if config.max_seconds:
                eta = min(eta, max(0.0, config.max_seconds - (now - session_start)))
            tokens_per_sec = tokens_per_step / step_seconds
            yield TrainEvent(
                "step", self.step, config.max_iters, self.train_seconds, self.tokens_seen, loss=loss_value, lr=lr,
                tokens_per_sec=tokens_per_sec, eta=eta,
                mfu=model_flops_utilisation(tokens_per_sec, self.flops_per_token, self.peak_flops),
            )
            if self.step % config.eval_interval == 0 or self.step == config.max_iters:
                yield self.evaluate_and_save()
                last_eval_step = self.step
            if self.across_processes(float(self.stop_wanted(now - session_start)), dist.ReduceOp.MAX):
                reason = "stopped" if self._stop.is_set() else "max_seconds"
                break
        if last_eval_step != self.step and self.step > session_start_step:
            yield self.evaluate_and_save()
        yield TrainEvent(
            "done", self.step, config.max_iters, self.train_seconds, self.tokens_seen,
            best_val_loss=self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            reason=reason, checkpoint=str(self.out_dir) if self.out_dir else None,
        )

    def wrapped_for_training(self) -> nn.Module:
        """The model as the steps call it: under DDP when there are several processes, compiled
        when asked (after DDP, so that compiled graphs still overlap gradient all-reduces)."""
        train_model = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(train_model)
        if self.config.compile:
            train_model = torch.compile(train_model)
        return train_model

    def train_step(self, train_model: nn.Module, lr: float) -> float:
        """One optimizer step on this process's rows of the next batch; the mean loss over processes."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.dataset.batch("train", config.batch_size, self.model.config.block_size, self.batch_generator)
        x, y = x[self.rank :: self.world_size].to(self.device), y[self.rank :: self.world_size].to(self.device)
        with self.autocast():
            _, loss = train_model(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        loss_value = self.across_processes(loss.item(), dist.ReduceOp.SUM) / self.world_size
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {self.step}; lower the learning rate or use "
                                     f"float32")
        return loss_value

    def clock(self, session_seconds: float) -> float:
        """The session's training time as the schedule reads it: every process must set the same
        learning rate, so with several processes the slowest one's clock counts."""
        if not self.config.decay_by_clock:
            return session_seconds
        return self.across_processes(session_seconds, dist.ReduceOp.MAX)

    def stop_wanted(self, session_seconds: float) -> bool:
        return self._stop.is_set() or bool(self.config.max_seconds and session_seconds >= self.config.max_seconds)

    def across_processes(self, value: float, op) -> float:
        """Under DDP every process must see the same mean loss and stop at the same step."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.item()

    def autocast(self):
        if self.config.dtype == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- evaluation -----------------------------------------------------------------------------

    def estimate_loss(self) -> dict[str, float]:
        """Mean loss over ``eval_iters`` batches per split; the same batches at every evaluation.

        Keys: ``train``, ``val``, and ``val:NAME`` for each of ``other_val_sets``."""
        splits = [("train", self.dataset, "train"), ("val", self.dataset, "val")]
        splits += [(f"val:{name}", dataset, "val") for name, dataset in self.other_val_sets.items()]
        return {key: self.mean_loss(dataset, split) for key, dataset, split in splits}

    def mean_loss(self, dataset: Dataset, split: str) -> float:
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        batches = (dataset.batch(split, self.config.batch_size, self.model.config.block_size, generator)
                   for _ in range(self.config.eval_iters))
        total, tokens = loss_over(self.model, batches, self.autocast)
        return total / tokens

    def sample(self) -> str | None:
        if not self.config.sample_tokens:
            return None
        prompt = self.dataset.val[:1].tolist()
        ids = generate(self.model, prompt, self.config.sample_tokens, temperature=1.0, seed=self.config.seed)
        return self.tokenizer.decode(ids)

    def probe_ids(self) -> list[int]:
        """The fixed text whose attention the snapshots show: the val split's first window."""
        return self.dataset.val[: self.model.config.block_size].tolist()

    def snapshot_attention(self) -> None:
        weights = attention_weights(self.model, torch.tensor([self.probe_ids()], device=self.device))
        self.attention_snapshots[self.step] = weights[0].to(torch.float16).cpu()  # half the disk, plenty for a heatmap

    def evaluate_and_save(self) -> TrainEvent:
        losses = self.estimate_loss()
        if self.config.attention_snapshots and self.rank == 0 and self.model.has_attention:
            self.snapshot_attention()
        improved = losses["val"] < self.best_val_loss
        if improved:
            self.best_val_loss = losses["val"]
        others = {key[len("val:"):]: loss for key, loss in losses.items() if key.startswith("val:")}
        accuracy = addition_accuracy(self.model, self.tokenizer, self.val_problems) if self.val_problems else None
        self.history.append(
            {"step": self.step, "tokens": self.tokens_seen, "elapsed": round(self.train_seconds, 3),
             "train_loss": losses["train"], "val_loss": losses["val"], **({"other_val_loss": others} if others else {}),
             **({"accuracy": accuracy} if accuracy is not None else {})}
        )
        sample = self.sample() if self.rank == 0 else None
        if self.writer is not None:
            self.save(weights=improved)
        return TrainEvent(
            "eval", self.step, self.config.max_iters, self.train_seconds, self.tokens_seen,
            train_loss=losses["train"], val_loss=losses["val"], best_val_loss=self.best_val_loss, sample=sample,
            other_val_loss=others or None, accuracy=accuracy, checkpoint=str(self.out_dir) if self.out_dir else None,
        )

    # --- what a save holds ----------------------------------------------------------------------

    def save(self, weights: bool) -> None:
        """Hand everything a save holds to the run's writer; every process takes part in gathering
        the RNG states, only rank 0 writes."""
        rng = self.rng_states()
        if self.rank != 0:
            return
        snapshots = None
        if self.attention_snapshots:
            snapshots = ([self.tokenizer.decode([i]) for i in self.probe_ids()], self.attention_snapshots)
        self.writer.save(self.model, self.optimizer, metrics=self.metrics(), config=self.saved_config(), rng=rng,
                         counters=self.counters(), weights=weights, snapshots=snapshots)

    def metrics(self) -> dict:
        best = min(self.history, key=lambda h: h["val_loss"]) if self.history else None
        return {
            "val_loss": best["val_loss"] if best else None,
            "train_loss": best["train_loss"] if best else None,
            **({"other_val_loss": best["other_val_loss"]} if best and "other_val_loss" in best else {}),
            "best_step": best["step"] if best else None,
            "steps": self.step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": round(self.train_seconds, 3),
            "parameters": self.model.num_parameters(),
            "trainable_parameters": self.model.num_parameters(trainable_only=True),
            "history": self.history,
        }

    def saved_config(self) -> dict:
        return {"train": asdict(self.config), **self.run_info}

    def counters(self) -> dict:
        """The training state's counters (the header of ``training_state.safetensors``)."""
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "history": self.history,
        }

    def rng_states(self) -> dict[str, torch.Tensor]:
        """The batch generator, and every process's own dropout RNG (gathered under DDP)."""
        states = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        rng = {"batch_generator": self.batch_generator.get_state()}
        for name, state in states.items():
            gathered = [state]
            if self.world_size > 1:  # RNG states have the same size on every process
                local = state.to(self.device)
                gathered = [torch.empty_like(local) for _ in range(self.world_size)]
                dist.all_gather(gathered, local)
            for rank, value in enumerate(gathered):
                rng[f"{name}.{rank}"] = value.cpu()
        return rng

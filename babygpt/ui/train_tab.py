"""Train tab: pick a preset and corpus, adjust hyperparameters, watch the loss fall live.

Two modes: train a model *from scratch*, or *LoRA fine-tune* one of the visitor's models on a new
corpus. A fine-tune's plot adds the val loss on the base's own corpus, so the learner sees what
the model forgets while it learns."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from ..checkpoint import read_json, shipped_checkpoints
from ..data import BUILTIN
from ..lora import TARGETS, LoRAConfig, adapter_parameters
from ..machine import bf16_instructions, bf16_trains_fast
from ..models import PRESETS, config_from_json, get_family, get_preset, make_config
from ..runs import DEFAULT_PRESET, FINETUNE_DEFAULTS, new_finetune, new_run, resolve_settings
from ..stats import flops_per_token, parameter_count
from ..tokenizer import builtin_character_count
from ..waiting import WaitingLine
from .common import first_of, friendly, model_choices, session_key, session_of, whole_number

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD = "upload a .txt file"
X_AXES = ("step", "tokens", "FLOPs")
MODES = ("from scratch", "LoRA fine-tune")
LORA_LIMITS = {"r": 64}
# Sizes a free 2-vCPU Space can train in minutes; larger settings are refused with a message.
LIMITS = {"n_layer": 12, "n_head": 16, "n_embd": 512, "block_size": 512, "batch_size": 128, "max_iters": 20000,
          "warmup_iters": 20000, "bpe_vocab_size": 4096, "seed": 2**31 - 1}
# The form's model fields; each family says which it has (config_class.form_fields).
SIZE_FIELDS = ("n_layer", "n_head", "n_embd", "block_size")
MODEL_FIELDS = (*SIZE_FIELDS, "dropout")
TOKENIZERS = [("characters (char)", "char"), ("byte-level BPE (bpe)", "bpe")]
OPTIMIZER_CHOICES = [("AdamW (adamw)", "adamw"), ("Muon for the hidden matrices, AdamW for the rest (muon)", "muon")]
MIN_BPE_VOCAB = 260  # byte-level BPE starts from the 256 bytes; fewer leaves no room for merges
PLOT_EVERY_SECONDS = 0.5
# The app trains one model at a time (the "train" concurrency group): everyone who presses a Start
# button waits in this line, and is told how long from the budgets of the runs ahead.
TRAINER_LINE = WaitingLine()
# The form's numbers in plain words, the code's name after them, and a line on what each does.
FIELD_WORDS = {
    "n_layer": ("layers (n_layer)", "blocks (or LSTM layers) stacked one after another"),
    "n_head": ("attention heads (n_head)", "heads per block, each looking for something else"),
    "n_embd": ("width (n_embd)", "numbers per token in the residual stream"),
    "block_size": ("context length (block_size)", "tokens the model sees at once"),
    "batch_size": ("sequences per step (batch_size)", "how many pieces of text each step learns from"),
    "max_iters": ("training steps (max_iters)", "optimizer updates, unless the time budget ends first"),
    "warmup_iters": ("warmup steps (warmup_iters)", "steps over which the learning rate ramps up from 0"),
    "bpe_vocab_size": ("BPE vocabulary size (bpe_vocab_size)",
                       "tokens the BPE tokenizer learns from the corpus (characters: one per character)"),
    "seed": ("seed (seed)", "the same seed and settings train the same model again"),
}


def bf16_note() -> str:
    if bf16_trains_fast():
        return f"train in bfloat16 where it is safe: faster here ({bf16_instructions() or 'a CUDA GPU'})"
    return "this machine's CPU has no bf16 matmul instructions (avx512_bf16, amx_bf16): bf16 would be emulated, slower"


def whole_number_field(name: str, value, minimum: int = 1, **options) -> gr.Number:
    label, info = FIELD_WORDS[name]
    return gr.Number(value, step=1, label=label, info=info, minimum=minimum, maximum=LIMITS[name], **options)


def check_limits(**values) -> None:
    """Each form number a whole number from 1 to its ``LIMITS`` entry."""
    for name, value in values.items():
        whole_number(value, name, 1, LIMITS[name])


@dataclasses.dataclass
class Knobs:
    """The form's "more knobs": what the CLI's train flags have beyond sizes and steps. Their
    defaults are the ones a caller of the API gets when it leaves them out."""

    tokenizer: str = "char"
    bpe_vocab_size: int = 512
    seed: int = 1337
    dropout: float = 0.0
    weight_decay: float = 0.1
    warmup_iters: int = 100
    bf16: bool = False
    optimizer: str = "adamw"

    @classmethod
    def from_form(cls, tokenizer=None, bpe_vocab_size=None, seed=None, dropout=None, weight_decay=None,
                  warmup_iters=None, bf16=None, optimizer=None) -> Knobs:
        """The form's values, checked; one left out (None) takes its default."""
        given = {"tokenizer": tokenizer, "bpe_vocab_size": bpe_vocab_size, "seed": seed, "dropout": dropout,
                 "weight_decay": weight_decay, "warmup_iters": warmup_iters, "bf16": bf16, "optimizer": optimizer}
        knobs = cls(**{name: value for name, value in given.items() if value is not None})
        if knobs.tokenizer not in {kind for _, kind in TOKENIZERS}:
            raise ValueError(f"tokenizer must be char or bpe, got {knobs.tokenizer!r}")
        knobs.bpe_vocab_size = whole_number(knobs.bpe_vocab_size, "BPE vocabulary size", MIN_BPE_VOCAB,
                                            LIMITS["bpe_vocab_size"])
        knobs.seed = whole_number(knobs.seed, "seed", 0, LIMITS["seed"])
        knobs.warmup_iters = whole_number(knobs.warmup_iters, "warmup steps", 0, LIMITS["warmup_iters"])
        if knobs.optimizer not in {kind for _, kind in OPTIMIZER_CHOICES}:
            raise ValueError(f"optimizer must be adamw or muon, got {knobs.optimizer!r}")
        if knobs.bf16 and not bf16_trains_fast():
            raise ValueError("bf16 autocast is off on this machine: " + bf16_note())
        return knobs

    def train_settings(self) -> dict:
        return {"seed": self.seed, "weight_decay": float(self.weight_decay), "warmup_iters": self.warmup_iters,
                "dtype": "bfloat16" if self.bf16 else "float32", "optimizer": self.optimizer}


def settings_from_form(preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds,
                       knobs: Knobs | None = None):
    """The form's values as (family, model settings, TrainConfig), checked like the CLI checks them."""
    knobs = knobs or Knobs()
    check_limits(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, batch_size=batch_size,
                 max_iters=max_iters)
    family, preset_settings = get_preset(preset)
    form = {"n_layer": int(n_layer), "n_head": int(n_head), "n_embd": int(n_embd), "block_size": int(block_size),
            "dropout": float(knobs.dropout)}
    # only the fields this family has; a family may adjust others to fit them (llama's n_kv_head)
    model = get_family(family).config_class.from_form(preset_settings.get("model", {}), form)
    train = {"batch_size": int(batch_size), "max_iters": int(max_iters), "learning_rate": float(learning_rate),
             "max_seconds": float(max_seconds or 0), "attention_snapshots": True,  # for the Attention tab's replay
             **knobs.train_settings()}
    return resolve_settings(preset=preset, model=model, train=train)


@friendly
def describe(preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds, corpus,
             tokenizer=None, bpe_vocab_size=None):
    """Parameter count and FLOPs per token of the configuration, before any training."""
    knobs = Knobs.from_form(tokenizer, bpe_vocab_size)
    family, model, train = settings_from_form(
        preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds, knobs
    )
    # a BPE vocabulary is what it is asked for; a character one the corpus's own characters
    vocab_size = knobs.bpe_vocab_size if knobs.tokenizer == "bpe" else characters_of(corpus)
    config = make_config(family, **{**model, "vocab_size": vocab_size})
    parameters = parameter_count(config)
    flops = flops_per_token(config)
    tokens = train.max_iters * train.batch_size * config.block_size
    return (
        f"**{family}**: {parameters:,} parameters · {flops['forward']:,.0f} FLOPs per token forward, "
        f"{flops['training']:,.0f} training · {train.max_iters:,} steps × {train.batch_size} × "
        f"{config.block_size} = {tokens:,} tokens ≈ {flops['training'] * tokens:.2e} FLOPs"
    )


def characters_of(corpus: str) -> int:
    """The character vocabulary of the chosen corpus (an upload's is unknown before training: 65,
    Tiny Shakespeare's, stands in for it)."""
    return builtin_character_count(corpus) if corpus in BUILTIN else 65


def lora_settings(r, alpha, targets) -> LoRAConfig:
    r = whole_number(r, "LoRA rank r", 1, LORA_LIMITS["r"])
    config = LoRAConfig(r=r, alpha=float(alpha or 0), targets=tuple(targets or ()))
    config.validate()
    return config


@friendly
def describe_lora(base, r, alpha, targets, request: gr.Request):
    """What the adapters will train, before training: their parameters and share of the model."""
    if not base:
        return "pick a base model to fine-tune"
    lora = lora_settings(r, alpha, targets)
    model_config = config_from_json(session_of(request).load(base).config["model"])
    counts = adapter_parameters(model_config, lora)
    return (f"LoRA r={lora.r}, alpha={lora.alpha:g} (scale {lora.scale:g}) on {', '.join(lora.targets)} of "
            f"**{base}**: **{counts['trainable']:,}** trainable parameters of {counts['total']:,} "
            f"({100 * counts['share']:.2f} %); the adapter file is about {4 * counts['trainable'] / 1024:,.0f} KB")


def corpus_source(corpus: str, upload: str | None) -> str:
    if corpus != UPLOAD:
        return corpus
    if not upload:
        raise ValueError("choose a .txt file to upload, or pick a built-in corpus")
    if not Path(upload).is_file():
        raise ValueError("the uploaded file is no longer on the server (uploads are deleted after a while); "
                         "upload it again")
    size = Path(upload).stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    return upload


def loss_figure(history: list[dict], steps: list[tuple[int, float]], x_axis: str, flops_per_token: float,
                tokens_per_step: int) -> go.Figure:
    """Per-step train loss, evaluated train and val loss, and (a fine-tune) val on the base corpus."""
    if x_axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)}; got {x_axis!r}")
    scale = {"step": 1.0, "tokens": tokens_per_step, "FLOPs": tokens_per_step * flops_per_token}[x_axis]
    figure = go.Figure()
    if steps:
        figure.add_scatter(x=[s * scale for s, _ in steps], y=[loss for _, loss in steps], name="train (step)",
                           mode="lines", line={"width": 1, "color": "rgba(99,110,250,0.35)"})
    if history:
        x = [h["step"] * scale for h in history]
        figure.add_scatter(x=x, y=[h["train_loss"] for h in history], name="train (eval)", mode="lines+markers")
        figure.add_scatter(x=x, y=[h["val_loss"] for h in history], name="val", mode="lines+markers")
        for name in history[0].get("other_val_loss", {}):
            figure.add_scatter(x=x, y=[h["other_val_loss"][name] for h in history], mode="lines+markers",
                               name=f"val on {name} (base corpus)", line={"dash": "dash"})
        if "accuracy" in history[0]:  # a task with answers: its share right, on an axis of its own
            figure.add_scatter(x=x, y=[100 * h["accuracy"] for h in history], name="exact-match accuracy (%)",
                               mode="lines+markers", yaxis="y2", line={"color": "green"})
            figure.update_layout(yaxis2={"title": "val problems exactly right (%)", "overlaying": "y",
                                         "side": "right", "range": [0, 100]})
    figure.update_layout(xaxis_title=x_axis, yaxis_title="loss (nats/token)", height=380,
                         margin={"l": 50, "r": 50, "t": 30, "b": 40}, legend={"orientation": "h"})
    return figure


def accuracy_line(history: list[dict]) -> str:
    """The last evaluation's exact-match accuracy, for a task with answers; else nothing."""
    if not history or "accuracy" not in history[-1]:
        return ""
    last = history[-1]
    return f" · exact-match accuracy {100 * last['accuracy']:.0f} % at step {last['step']:,}"


def run_kind(*settings) -> str:
    """Runs of the same settings take alike beyond their budget (the data, the last evaluation,
    saving): the line learns that time per kind."""
    return repr(settings)


@contextlib.contextmanager
def trainer_turn(request: gr.Request | None, max_seconds, kind: str):
    """The run's turn at the trainer, from its start to its end however it ends; a run that ended
    by its budget (``turn["reason"]``) teaches the line how long runs take beyond their budget."""
    key = session_key(request)
    turn = {"key": key, "reason": None}
    TRAINER_LINE.start(key, time_budget(max_seconds), kind)
    try:
        yield turn
    finally:
        TRAINER_LINE.finish(key, ended_by_budget=turn["reason"] == "max_seconds")


def time_budget(max_seconds) -> float | None:
    ok = isinstance(max_seconds, (int, float)) and not isinstance(max_seconds, bool)
    return float(max_seconds) if ok and 0 < max_seconds < float("inf") else None


def join_line(request: gr.Request | None, max_seconds, kind: str) -> str:
    """Take a place in the trainer's line; say how long the runs ahead will take (their budgets)."""
    estimate = TRAINER_LINE.join(session_key(request), time_budget(max_seconds), kind)
    return estimate.words() or "starting…"


def join_for_training(max_seconds, preset, n_layer, n_head, n_embd, block_size, batch_size, corpus,
                      request: gr.Request) -> str:
    """The Start training button's first event (the run's kind as ``train`` names it)."""
    return join_line(request, max_seconds, run_kind(preset, n_layer, n_head, n_embd, block_size, batch_size, corpus))


def join_for_finetune(max_seconds, base, r, targets, batch_size, corpus, request: gr.Request) -> str:
    """The Start fine-tune button's first event (the run's kind as ``finetune`` names it)."""
    return join_line(request, max_seconds, run_kind(base, r, targets, batch_size, corpus))


def status_line(event) -> str:
    eta = f"{event.eta:.0f} s" if event.eta is not None else "?"
    return (f"step {event.step:,}/{event.max_iters:,} · loss {event.loss:.4f} · {event.tokens_per_sec:,.0f} tokens/s · "
            f"MFU {100 * event.mfu:.1f} % · "
            f"elapsed {event.elapsed:.0f} s · ETA {eta}")


@friendly
def train(preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds,
          corpus, upload, x_axis, tokenizer=None, bpe_vocab_size=None, seed=None, dropout=None, weight_decay=None,
          warmup_iters=None, bf16=None, optimizer=None, request: gr.Request = None, progress=gr.Progress()):
    """Train and stream (plot, status, sample, model list, download). Stop keeps the best model."""
    session = session_of(request)
    session.stop_requested.clear()
    with trainer_turn(request, max_seconds, run_kind(preset, n_layer, n_head, n_embd, block_size, batch_size,
                                                     corpus)) as turn:
        knobs = Knobs.from_form(tokenizer, bpe_vocab_size, seed, dropout, weight_decay, warmup_iters, bf16, optimizer)
        family, model, train_settings = settings_from_form(
            preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds, knobs
        )
        name, out_dir = session.new_model_dir(preset)
        trainer = new_run(corpus_source(corpus, upload), preset=preset, model=model,
                          train=dataclasses.asdict(train_settings), tokenizer=knobs.tokenizer,
                          bpe_vocab_size=knobs.bpe_vocab_size, out_dir=out_dir)
        yield from stream_run(session, trainer, name, out_dir, x_axis, progress, turn)


@friendly
def finetune(base, r, alpha, targets, drop_unknown, batch_size, max_iters, learning_rate, max_seconds, corpus, upload,
             x_axis, request: gr.Request, progress=gr.Progress()):
    """LoRA fine-tune a model of this session on a corpus; stream like ``train``."""
    session = session_of(request)
    session.stop_requested.clear()
    with trainer_turn(request, max_seconds, run_kind(base, r, targets, batch_size, corpus)) as turn:
        if not base:
            raise ValueError("pick a base model to fine-tune")
        lora = lora_settings(r, alpha, targets)
        check_limits(batch_size=batch_size, max_iters=max_iters)
        train = {"batch_size": int(batch_size), "max_iters": int(max_iters), "learning_rate": float(learning_rate),
                 "min_lr": min(FINETUNE_DEFAULTS["min_lr"], float(learning_rate)),
                 "max_seconds": float(max_seconds or 0), "sample_tokens": 200, "attention_snapshots": True}
        name, out_dir = session.new_model_dir(f"{base}-lora")
        trainer = new_finetune(session.path_of(base), corpus_source(corpus, upload), lora, train, out_dir,
                               drop_unknown=bool(drop_unknown))
        dropped = trainer.run_info.get("dropped_characters")
        if dropped:
            gr.Info(f"dropped {dropped:,} characters that {base}'s vocabulary has no token for")
        yield from stream_run(session, trainer, name, out_dir, x_axis, progress, turn)


def stream_run(session, trainer, name: str, out_dir: Path, x_axis: str, progress, turn: dict):
    """Run ``trainer`` and stream (plot, status, sample, model list, download). Stop keeps the best;
    ``turn`` learns how the run ended."""
    session.trainer = trainer
    if session.stop_requested.is_set():  # Stop was pressed while the data was being prepared
        trainer.stop()
    flops = flops_per_token(trainer.model.config)["training"]
    tokens_per_step = trainer.config.batch_size * trainer.model.config.block_size
    steps, sample, last_draw, last_step = [], "", 0.0, None
    session.curves = {"history": trainer.history, "steps": steps, "flops_per_token": flops,
                      "tokens_per_step": tokens_per_step}
    trainable = trainer.model.num_parameters(trainable_only=True)
    status = f"training **{name}** ({trainable:,} trainable parameters)…"
    no_change = gr.update()
    try:
        for event in trainer.run():
            session.touch()
            TRAINER_LINE.still_running(turn["key"])
            if event.kind == "step":
                last_step = event
                steps.append((event.step, event.loss))
                progress((event.step, event.max_iters), desc="training")
                status = status_line(event) + accuracy_line(trainer.history)
                if time.monotonic() - last_draw < PLOT_EVERY_SECONDS:
                    continue
            elif event.kind == "eval":
                sample = event.sample or sample
            elif event.kind == "done":
                session.own[name] = out_dir
                turn["reason"] = event.reason
                break
            last_draw = time.monotonic()
            figure = loss_figure(trainer.history, steps, x_axis, flops, tokens_per_step)
            yield figure, status, sample, no_change, no_change
    finally:
        session.trainer = None
        session.touch()  # its idle time starts now, not when the training began
    archive = shutil.make_archive(str(session.folder / name), "zip", out_dir)
    speed = ""
    if last_step:
        speed = f" Last step: {last_step.tokens_per_sec:,.0f} tokens/s, MFU {100 * last_step.mfu:.1f} %."
    done = (f"**{name}** is ready ({event.reason}): " + result_line(trainer) + speed
            + " It is now in every tab's model list.")
    yield (loss_figure(trainer.history, steps, x_axis, flops, tokens_per_step), done, sample,
           model_choices(session), archive)


def result_line(trainer) -> str:
    history = trainer.history
    line = f"best val loss {trainer.best_val_loss:.4f} after {trainer.step:,} steps, {trainer.train_seconds:.0f} s."
    if history and "accuracy" in history[-1]:
        line += (f" Exact-match accuracy on {len(trainer.val_problems)} val problems: "
                 f"{100 * history[-1]['accuracy']:.0f} % (greedy decoding).")
    if history and history[0].get("other_val_loss"):  # a fine-tune: where it started, and the forgetting
        first, best = history[0], min(history, key=lambda h: h["val_loss"])
        line += (f" On the new corpus val went {first['val_loss']:.3f} → {best['val_loss']:.3f}; "
                 + "; ".join(f"on {n} (the base corpus) {first['other_val_loss'][n]:.3f} → {loss:.3f}"
                             for n, loss in best["other_val_loss"].items()) + ".")
    return line


@friendly
def redraw(x_axis, request: gr.Request):
    """The last run's curves against another x axis (step, tokens or FLOPs)."""
    curves = session_of(request).curves
    if not curves:
        return gr.update()
    return loss_figure(curves["history"], curves["steps"], x_axis, curves["flops_per_token"], curves["tokens_per_step"])


def stop(request: gr.Request) -> str:
    session = session_of(request)
    session.stop_requested.set()
    trainer = session.trainer
    if trainer is not None:
        trainer.stop()
    return "stopping after this step; the best model so far is kept…"


def stop_answer(stop_button: gr.Button, stop_fn, api_name: str, elem_id: str, starts: list) -> gr.Markdown:
    """Stop's answer, in a note of its own: it may arrive after the run's last word, which it
    would overwrite in the run's status. Each of ``starts`` (a new run) clears it."""
    note = gr.Markdown(elem_id=elem_id)
    stop_button.click(stop_fn, None, note, api_name=api_name, concurrency_limit=None)
    gr.on(starts, **cleared_in_the_page(note))
    return note


EMPTIED_IN_THE_PAGE = "() => ''"


def cleared_in_the_page(component: gr.components.Component) -> dict:
    """An event's arguments that empty the component in the page alone (a new run clears the
    last one's Stop answer)."""
    return dict(fn=None, inputs=None, outputs=component, js=EMPTIED_IN_THE_PAGE, api_visibility="private")


def preset_values(preset: str):
    """Fill the form with a preset's settings (a field the family lacks keeps a placeholder)."""
    family, model, train = resolve_settings(preset=preset)
    config = make_config(family, **model)
    sizes = [getattr(config, name, placeholder) for name, placeholder in zip(SIZE_FIELDS, (1, 1, 32, 64))]
    return (*sizes, train.batch_size, train.max_iters, train.learning_rate, getattr(config, "dropout", 0.0),
            train.weight_decay, train.warmup_iters)


def form_fields(preset: str):
    """Grey out the model fields the preset's family does not have, and say so in their info."""
    family = get_family(get_preset(preset)[0])
    has = family.config_class.form_fields
    return tuple(gr.update(interactive=name in has, info=None if name in has else f"a {family.name} model has none")
                 for name in MODEL_FIELDS)


def switch_mode(mode: str, preset: str):
    """Show the chosen mode's fields and its usual step count and learning rate."""
    lora = mode == MODES[1]
    if lora:
        iters, rate, corpus = FINETUNE_DEFAULTS["max_iters"], FINETUNE_DEFAULTS["learning_rate"], "kjv"
    else:
        iters, rate = preset_values(preset)[5:7]
        corpus = "shakespeare"
    return (gr.update(visible=not lora), gr.update(visible=not lora), gr.update(visible=lora),
            gr.update(visible=not lora), gr.update(visible=lora), iters, rate, corpus, gr.update(visible=not lora))


def describe_mode(mode, preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds,
                  corpus, base, r, alpha, targets, tokenizer=None, bpe_vocab_size=None, request: gr.Request = None):
    if mode == MODES[1]:
        return describe_lora(base, r, alpha, targets, request)
    return describe(preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds,
                    corpus, tokenizer, bpe_vocab_size)


def result_fields() -> list[gr.components.Component]:
    """What a run shows: its status, gradio's progress, the loss plot, a sample, the zip. Before
    the first run the plot holds the shipped model's curves, so that it never opens empty."""
    return [gr.Markdown("pick a preset and press Start; until then the plot shows how the shipped "
                        f"`{DEFAULT_PRESET}` trained"),
            # gradio's progress (queue rank, then the steps) shows here, so that the status stays
            # readable while a visitor waits: it holds the estimated wait
            gr.Markdown(elem_classes="progress-bar"),
            gr.Plot(shipped_curves(), label="loss", elem_id="train-plot"),
            gr.Textbox(label="sample at the last evaluation", lines=6,
                       placeholder="each evaluation of your run writes a sample here"),
            gr.File(label="checkpoint (zip)")]


def shipped_curves() -> go.Figure | None:
    """The shipped default preset's evaluated train and val loss, from its metrics."""
    path = shipped_checkpoints().get(DEFAULT_PRESET)
    if path is None:
        return None
    history = read_json(path / "metrics.json")["history"]
    figure = loss_figure(history, [], "step", 0.0, 0)
    figure.update_layout(title=f"the shipped {DEFAULT_PRESET}'s training, for reference: yours draws here")
    return figure


def lora_fields(base_choices: list[str]) -> list[gr.components.Component]:
    """The fine-tune's own fields: the frozen base, the adapters' rank, alpha and targets."""
    return [gr.Dropdown(base_choices, value=first_of(base_choices), allow_custom_value=True,
                        label="base model (kept frozen)", scale=2),
            gr.Number(8, step=1, label="rank r", minimum=1, maximum=LORA_LIMITS["r"]),
            gr.Number(16, label="alpha (scale = alpha / r)", minimum=0),
            gr.CheckboxGroup(list(TARGETS), value=["q", "v"], label="adapt", scale=2,
                             info="query, key, value, attention output, MLP, output head"),
            gr.Checkbox(True, label="drop characters the base never saw")]


def more_knobs_fields(defaults: tuple) -> list[gr.components.Component]:
    """The fields of ``Knobs``, in its order; dropout, weight decay and warmup from ``defaults``
    (``preset_values``), the others from ``Knobs``' own defaults."""
    knobs = Knobs()
    with gr.Row():
        tokenizer = gr.Radio(TOKENIZERS, value=knobs.tokenizer, label="tokenizer (tokenizer)",
                             info="one token per character, or byte-level BPE learned from the corpus")
        bpe_vocab_size = whole_number_field("bpe_vocab_size", knobs.bpe_vocab_size, minimum=MIN_BPE_VOCAB)
        seed = whole_number_field("seed", knobs.seed, minimum=0)
    with gr.Row():
        dropout = gr.Slider(0.0, 0.5, defaults[7], step=0.05, label="dropout (dropout)",
                            info="share of activations zeroed at random while training, against overfitting")
        weight_decay = gr.Number(defaults[8], minimum=0, label="weight decay (weight_decay)",
                                 info="how hard each step pulls the weight matrices toward zero")
        warmup_iters = whole_number_field("warmup_iters", defaults[9], minimum=0)
        bf16 = gr.Checkbox(knobs.bf16, label="bf16 autocast (dtype=bfloat16)", info=bf16_note(),
                           interactive=bf16_trains_fast())
    muon_note = ("Muon moves every direction of a weight matrix by the same amount (its update orthogonalised); "
                 "the embedding table, the output head, norms and biases keep AdamW")
    optimizer = gr.Radio(OPTIMIZER_CHOICES, value=knobs.optimizer, label="optimizer (optimizer)", info=muon_note)
    return [tokenizer, bpe_vocab_size, seed, dropout, weight_decay, warmup_iters, bf16, optimizer]


def build(model_names: gr.JSON, base_choices: list[str]) -> dict[str, gr.components.Component]:
    """The tab's components and events; a finished run writes the session's models to ``model_names``.
    Returns the fields others fill in: the base-model selector (the app refreshes it with the
    session's models), the mode, preset, corpus and time budget (Start here's steps)."""
    defaults = preset_values(DEFAULT_PRESET)
    mode = gr.Radio(list(MODES), value=MODES[0], label="mode",
                    info="LoRA fine-tune trains small adapters on a frozen model you already have")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset", scale=2)
        corpus = gr.Dropdown([*BUILTIN, UPLOAD], value="shakespeare", label="corpus", scale=2)
        upload = gr.File(label="your corpus (UTF-8 .txt, up to 5 MB)", file_types=[".txt"], type="filepath", scale=3)
    with gr.Row(visible=False) as lora_row:
        base, lora_r, lora_alpha, lora_targets, drop_unknown = lora_fields(base_choices)
    with gr.Row() as architecture:
        n_layer, n_head, n_embd, block_size = (whole_number_field(name, value)
                                               for name, value in zip(SIZE_FIELDS, defaults[:4]))
    with gr.Row():
        batch_size = whole_number_field("batch_size", defaults[4])
        max_iters = whole_number_field("max_iters", defaults[5])
        learning_rate = gr.Number(defaults[6], label="learning rate (learning_rate)",
                                  info="how far each step moves the weights")
        max_seconds = gr.Number(60, label="time budget (s, 0 = none)", minimum=0)
    with gr.Accordion("more knobs: tokenizer, seed, dropout, weight decay, warmup, bf16, optimizer",
                      open=False) as more:
        more_knobs = more_knobs_fields(defaults)
    tokenizer, bpe_vocab_size, _, dropout, weight_decay, warmup_iters, _, _ = more_knobs
    summary = gr.Markdown()
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        start_lora = gr.Button("Start fine-tune", variant="primary", visible=False)
        stop_button = gr.Button("Stop")
        x_axis = gr.Radio(list(X_AXES), value="step", label="x axis")
    stop_answer(stop_button, stop, "stop_training", "train-stop-note", [start.click, start_lora.click])
    status, progress_bar, plot, sample, download = result_fields()

    form = [preset, n_layer, n_head, n_embd, block_size, batch_size, max_iters, learning_rate, max_seconds]
    lora_form = [base, lora_r, lora_alpha, lora_targets]
    gr.on([c.change for c in [mode, *form, corpus, *lora_form, tokenizer, bpe_vocab_size]], describe_mode,
          [mode, *form, corpus, *lora_form, tokenizer, bpe_vocab_size], summary, api_name="describe",
          show_progress="hidden")
    preset.change(preset_values_with_link, preset, [*form[1:8], dropout, weight_decay, warmup_iters],
                  api_name="preset_values").then(
        form_fields, preset, [*form[1:5], dropout], api_name="form_fields", show_progress="hidden")
    mode.change(switch_mode, [mode, preset], [preset, architecture, lora_row, start, start_lora, max_iters,
                                              learning_rate, corpus, more], api_name="switch_mode")
    outputs = [plot, status, sample, model_names, download]
    line = dict(outputs=status, concurrency_limit=None, show_progress="hidden")
    start.click(join_for_training, [max_seconds, *form[:6], corpus], api_name="join_training_line", **line).then(
        train, [*form, corpus, upload, x_axis, *more_knobs], outputs,
        api_name="train", concurrency_limit=1, concurrency_id="train", show_progress_on=progress_bar,
    )
    start_lora.click(join_for_finetune, [max_seconds, base, lora_r, lora_targets, batch_size, corpus],
                     api_name="join_finetune_line", **line).then(
        finetune, [*lora_form, drop_unknown, batch_size, max_iters, learning_rate, max_seconds, corpus, upload, x_axis],
        outputs, api_name="finetune", concurrency_limit=1, concurrency_id="train", show_progress_on=progress_bar,
    )
    x_axis.change(redraw, x_axis, plot, api_name="redraw", concurrency_limit=None)
    copy_link_button("Copy a link to this form", form_link, linked := [*form, corpus, *more_knobs], "train_link")
    return {"base": base, "mode": mode, "preset": preset, "corpus": corpus, "max_seconds": max_seconds,
            "fields": dict(zip(LINK_FIELDS, linked))}


# The Train form's fields in the order ``linked`` lists them, by the names a link gives them.
LINK_FIELDS = ("preset", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "learning_rate",
               "max_seconds", "corpus", "tokenizer", "bpe_vocab_size", "seed", "dropout", "weight_decay",
               "warmup_iters", "bf16", "optimizer")
# The handler answers a query (?...); the page makes it a whole address and copies it.
ABSOLUTE_LINK_JS = """(query) => {
    if (!query || !query.startsWith("?")) return query;
    const link = window.location.origin + window.location.pathname + query;
    navigator.clipboard?.writeText(link).catch(() => {});
    return link;
}"""


def copy_link_button(label: str, fn, inputs: list, api_name: str) -> None:
    """A button that shows and copies the link ``fn`` makes of ``inputs`` (a query; the page makes
    it a whole address). The link's box is #train-link for api_name train_link."""
    link = gr.Textbox(label="the link (copied when you press the button)", elem_id=api_name.replace("_", "-"),
                      interactive=False)
    gr.Button(label, size="sm").click(fn, inputs, link, api_name=api_name, show_progress="hidden").then(
        None, link, link, js=ABSOLUTE_LINK_JS, show_progress="hidden")


def form_link(*values) -> str:
    """The query of a link that fills the Train form with these values (bf16 is the machine's
    choice, and an upload cannot travel in a link: both are left out)."""
    from .links import link_query

    settings = dict(zip(LINK_FIELDS, values))
    settings.pop("bf16")
    if settings["corpus"] not in BUILTIN:
        gr.Warning("an uploaded corpus cannot travel in a link: the link says shakespeare")
        settings["corpus"] = "shakespeare"
    return link_query({"tab": "train", **settings})


PRESET_FILLED = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters", "learning_rate", "dropout",
                 "weight_decay", "warmup_iters")


def preset_values_with_link(preset: str, request: gr.Request = None):
    """``preset_values``, where a link opened this page with another preset: the link's own
    values win over the preset's (they waited in the session for this event)."""
    values = list(preset_values(preset))
    pending = session_of(request).pending_link
    if pending.get("preset") == preset:
        link = pending.pop("train", {})
        pending.pop("preset")
        values = [link.get(name, value) for name, value in zip(PRESET_FILLED, values)]
    return tuple(values)

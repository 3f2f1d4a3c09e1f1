"""One-knob ablations: the same base trained several times, one setting changed, everything else equal.

Every run of an ablation gets the same seed (or the same list of seeds) and the same wall-clock
budget, so what differs between the curves is the knob. With two or more seeds per setting the
spread between seeds is a measure of the noise: a difference smaller than it says nothing.

A knob is any setting of the base's model config (``n_layer``, ``dropout``, ``attn_rank``, …),
a training setting (``learning_rate``, ``optimizer``, …), ``family`` (the base's sizes where the
other family has them) or ``tokenizer`` (``char``, ``bpe-512``, …). ``plan`` checks the whole
ablation before anything trains; ``run_ablation`` is a generator like the trainer's loop, so the
CLI and the app render the same events.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .data import is_builtin, load_text
from .experiments import Run, overlay_figure
from .models import FAMILIES, get_family, get_preset
from .runs import new_run, resolve_settings
from .tokenizer import train_tokenizer
from .trainer import TrainConfig, TrainEvent

MAX_VALUES = 5
MAX_SEEDS = 5
# Training settings worth turning; the rest are the machine's (device, threads), the budget's or
# the bookkeeping's (evaluation, samples), which an ablation keeps equal.
TRAIN_KNOBS = ("learning_rate", "min_lr", "batch_size", "warmup_iters", "lr_decay_iters", "weight_decay", "beta1",
               "beta2", "grad_clip", "optimizer")
WHOLE_RUN_KNOBS = ("family", "tokenizer")
# Every run evaluates often enough to draw a curve within a short budget, and samples no text.
EVALUATION = {"eval_interval": 25, "eval_iters": 10, "sample_tokens": 0}


@dataclass
class AblationSpec:
    """What to ablate. ``values`` are text as a user types them ("1,2,4" split), parsed per knob."""

    knob: str
    values: list[str]
    preset: str | None = "gpt"
    family: str | None = None  # the base's family when it is no preset (a model's own settings)
    corpus: str = "shakespeare"
    max_seconds: float = 20.0
    seeds: int = 1
    seed: int = 1337
    model: dict = field(default_factory=dict)  # the base's settings over the preset's
    train: dict = field(default_factory=dict)
    tokenizer: str = "char"  # the base's tokenizer, unless it is the knob
    bpe_vocab_size: int = 512


@dataclass
class PlannedRun:
    """One run of the ablation, checked: ``label`` names its setting ("n_layer=2")."""

    label: str
    value: object
    seed: int
    family: str
    model: dict
    train: dict
    tokenizer: str
    bpe_vocab_size: int

    @property
    def name(self) -> str:
        """Its checkpoint folder's name: the label in characters any file system takes."""
        return re.sub(r"[^A-Za-z0-9_.=+-]", "-", f"{self.label}-seed{self.seed}")


@dataclass
class RunResult:
    label: str
    value: object
    seed: int
    val_loss: float  # at the budget: the run's last evaluation
    best_val_loss: float
    bits_per_char: float
    steps: int
    tokens_seen: int
    train_seconds: float
    parameters: int
    tokenizer: str
    history: list[dict]
    checkpoint: str | None
    training_flops_per_token: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass
class AblationEvent:
    """``kind``: "start" (a run begins), "train" (its trainer's event), "finished" (its result),
    or "done" (every result). ``index`` counts runs from 0."""

    kind: str
    index: int
    total: int
    run: PlannedRun | None = None
    train_event: TrainEvent | None = None
    result: RunResult | None = None
    results: list[RunResult] | None = None
    history: list[dict] | None = None  # "train": the run's evaluations so far
    tokenizer: str | None = None  # "train": the run's tokenizer, as RunResult names it


def knobs_for(family: str) -> list[str]:
    """Every knob an ablation of a ``family`` base can turn."""
    model = [f.name for f in dataclasses.fields(get_family(family).config_class) if f.name != "vocab_size"]
    return [*WHOLE_RUN_KNOBS, *model, *TRAIN_KNOBS]


def split_values(text: str) -> list[str]:
    """ "1, 2,4" -> ["1", "2", "4"]."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_value(knob: str, text: str, family: str):
    """A typed value for ``knob`` from its text, or ValueError naming it."""
    if knob == "family":
        get_family(text)
        return text
    if knob == "tokenizer":
        if text == "char":
            return ("char", None)
        match = re.fullmatch(r"bpe-(\d+)", text)
        if not match:
            raise ValueError(f"tokenizer values are char or bpe-N (N the vocabulary size), got {text!r}")
        return ("bpe", int(match.group(1)))
    fields = {f.name: f for f in dataclasses.fields(get_family(family).config_class)}
    fields.update({f.name: f for f in dataclasses.fields(TrainConfig) if f.name in TRAIN_KNOBS})
    kind = type(fields[knob].default)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{knob} is true or false, got {text!r}")
        return text.lower() == "true"
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{knob} takes {kind.__name__} values, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{knob} must be a finite number, got {text!r}")
    return value


def plan(spec: AblationSpec, max_seconds_cap: float | None = None) -> list[PlannedRun]:
    """Every run of the ablation, each one's settings checked as a run would check them: a bad
    knob or value is refused here, naming it, before anything trains."""
    if spec.preset is not None:
        base_family, preset_settings = get_preset(spec.preset)
    elif spec.family is not None:
        base_family, preset_settings = get_family(spec.family).name, {}
    else:
        raise ValueError("an ablation needs a base: a preset, or a model's settings")
    load_text(spec.corpus)  # an unknown corpus or an unreadable file is refused now, not at the first run
    knobs = knobs_for(base_family)
    if spec.knob not in knobs:
        raise ValueError(f"unknown knob {spec.knob!r} for a {base_family} base; choose one of: {', '.join(knobs)}")
    values = list(spec.values)
    if not 2 <= len(values) <= MAX_VALUES:
        raise ValueError(f"an ablation compares 2 to {MAX_VALUES} values, got {len(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"each value once: {', '.join(values)} repeats one")
    if isinstance(spec.seeds, bool) or not isinstance(spec.seeds, int) or not 1 <= spec.seeds <= MAX_SEEDS:
        raise ValueError(f"seeds per setting must be a whole number from 1 to {MAX_SEEDS}, got {spec.seeds!r}")
    budget = spec.max_seconds
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"the time budget per run must be a positive number of seconds, got {budget!r}")
    if max_seconds_cap is not None and budget > max_seconds_cap:
        raise ValueError(f"the time budget per run is at most {max_seconds_cap:g} s here, got {budget:g}")
    runs = []
    for text in values:
        try:
            value = parse_value(spec.knob, text, base_family)
            family, model, tokenizer, bpe_size = base_family, dict(spec.model), spec.tokenizer, spec.bpe_vocab_size
            train = {**preset_settings.get("train", {}), **spec.train, **EVALUATION, "max_seconds": float(budget)}
            preset = spec.preset
            if spec.knob == "family":
                family, preset = value, None
                known = {f.name for f in dataclasses.fields(FAMILIES[value].config_class)}
                model = {k: v for k, v in {**preset_settings.get("model", {}), **model}.items() if k in known}
            elif spec.knob == "tokenizer":
                tokenizer, bpe_size = value[0], value[1] or spec.bpe_vocab_size
            elif spec.knob in TRAIN_KNOBS:
                train[spec.knob] = value
            else:
                model[spec.knob] = value
            family, model, train_config = resolve_settings(family, preset, model, train)
        except ValueError as error:
            raise ValueError(f"{spec.knob}={text}: {error}") from None
        for seed in range(spec.seed, spec.seed + spec.seeds):
            runs.append(PlannedRun(f"{spec.knob}={text}", value, seed, family, model,
                                   {**dataclasses.asdict(train_config), "seed": seed}, tokenizer, bpe_size))
    check_tokenizers(runs, spec.corpus)
    return runs


# What an ablation takes from a trained model as its base: every model setting, and the training
# settings that shape the run (not its budget, evaluation or machine, which the ablation sets).
BASE_TRAIN_SETTINGS = (*TRAIN_KNOBS, "max_iters")


def base_from_checkpoint(config: dict) -> dict:
    """``AblationSpec`` settings (family, model, train, tokenizer, corpus) that make a trained
    model's config (its ``config.json``) the base of an ablation."""
    if config.get("kind") == "lora" or "model" not in config:
        raise ValueError("a LoRA adapter's settings are its base's and its rank: ablate its base model instead")
    model = {k: v for k, v in config["model"].items() if k not in ("family", "vocab_size")}
    train = {k: v for k, v in config.get("train", {}).items() if k in BASE_TRAIN_SETTINGS}
    tokenizer = config.get("tokenizer", "char")
    base = {"preset": None, "family": config["model"]["family"], "model": model, "train": train,
            "tokenizer": tokenizer}
    if tokenizer == "bpe":
        base["bpe_vocab_size"] = config["model"]["vocab_size"]
    if is_builtin(config.get("corpus", "")):
        base["corpus"] = config["corpus"]
    return base


def check_tokenizers(runs: list[PlannedRun], corpus: str) -> None:
    """A BPE vocabulary the corpus cannot fill is refused: its runs would not be the size asked for."""
    sizes = sorted({run.bpe_vocab_size for run in runs if run.tokenizer == "bpe"})
    if not sizes:
        return
    text = load_text(corpus)
    for size in sizes:
        try:
            filled = train_tokenizer("bpe", text, size).vocab_size
        except ValueError as error:
            raise ValueError(f"tokenizer=bpe-{size}: {error}") from None
        if filled < size:
            raise ValueError(f"tokenizer=bpe-{size}: the corpus fills only {filled:,} tokens of a {size:,}-token BPE "
                             f"vocabulary; choose {filled:,} or fewer")


def run_ablation(spec: AblationSpec, out_dir: str | Path | None = None, runs: list[PlannedRun] | None = None,
                 first: int = 0, stop=None) -> Iterator[AblationEvent]:
    """Train every planned run in turn, yielding its trainer's events; ``out_dir`` holds one
    checkpoint per run and, at the end, ``results.csv`` and ``results.json``. ``first`` and
    ``runs`` let a caller run them in turns (the app lets other visitors train in between);
    ``stop()`` true ends the ablation after the current run's next step."""
    runs = plan(spec) if runs is None else runs
    results = []
    for index in range(first, len(runs)):
        result = None
        run_dir = Path(out_dir) / runs[index].name if out_dir is not None else None
        for event in run_one(spec, runs, index, run_dir, stop):
            if event.kind == "finished":
                result = event.result
            yield event
        results.append(result)
        if stop is not None and stop():
            break
    if out_dir is not None:
        write_results(spec, results, out_dir)
    yield AblationEvent("done", len(results), len(runs), results=results)


def run_one(spec: AblationSpec, runs: list[PlannedRun], index: int, run_dir: str | Path | None,
            stop=None) -> Iterator[AblationEvent]:
    """The ``index``-th planned run, its checkpoint in ``run_dir``: "start", its trainer's events
    as "train", then "finished"."""
    run = runs[index]
    yield AblationEvent("start", index, len(runs), run=run)
    trainer = new_run(spec.corpus, run.family, None, run.model, run.train, tokenizer=run.tokenizer,
                      bpe_vocab_size=run.bpe_vocab_size, out_dir=run_dir)
    tokenizer = f"{trainer.tokenizer.kind}-{trainer.tokenizer.vocab_size}"
    for event in trainer.run():
        if stop is not None and stop():
            trainer.stop()
        yield AblationEvent("train", index, len(runs), run=run, train_event=event, history=trainer.history,
                            tokenizer=tokenizer)
    val = trainer.dataset.val
    characters_per_token = len(trainer.tokenizer.decode(val.tolist())) / len(val)
    last = trainer.history[-1]
    result = RunResult(
        label=run.label, value=run.value, seed=run.seed, val_loss=last["val_loss"], best_val_loss=trainer.best_val_loss,
        bits_per_char=last["val_loss"] / math.log(2) / characters_per_token, steps=trainer.step,
        tokens_seen=trainer.tokens_seen, train_seconds=trainer.train_seconds,
        parameters=trainer.model.num_parameters(), tokenizer=tokenizer,
        history=list(trainer.history), checkpoint=str(run_dir) if run_dir else None,
        training_flops_per_token=trainer.flops_per_token)
    yield AblationEvent("finished", index, len(runs), run=run, result=result)


def ablation_figure(spec: AblationSpec, results: list[RunResult], current: AblationEvent | None = None,
                    x_axis: str = "seconds"):
    """Every finished run's curves and the running one's so far, on one chart (equal budgets: wall
    time is the fair x axis)."""
    runs = [Run(f"{r.label} seed {r.seed}", r.history, r.parameters, r.val_loss, r.train_seconds, r.tokens_seen,
                spec.corpus, r.tokenizer, r.training_flops_per_token, None) for r in results]
    if current is not None and current.history:
        run = current.run
        runs.append(Run(f"{run.label} seed {run.seed} (running)", list(current.history), 0, None, 0.0, 0,
                        spec.corpus, current.tokenizer, 0.0, None))
    return overlay_figure(runs, x_axis)


def ranked_by(results: list[RunResult]) -> str:
    """Val loss when every run has one tokenizer; bits per character (which divides it out) when not."""
    return "val_loss" if len({r.tokenizer for r in results}) <= 1 else "bits_per_char"


LEADERBOARD_HEADERS = ["rank", "setting", "val loss at the budget", "bits per character", "spread between seeds",
                       "verdict", "steps", "tokens/s", "parameters"]


def leaderboard(results: list[RunResult]) -> list[dict]:
    """One entry per setting, best first by ``ranked_by``; with several seeds a setting's spread is
    the standard deviation between them, and a setting closer to the best than the larger of the
    two spreads is "within noise" of it."""
    metric = ranked_by(results)
    settings: dict[str, list[RunResult]] = {}
    for result in results:
        settings.setdefault(result.label, []).append(result)
    entries = []
    for label, runs in settings.items():
        scores = [getattr(r, metric) for r in runs]
        entries.append({
            "setting": label, "seeds": [r.seed for r in runs], "metric": metric,
            "val_loss": statistics.fmean(r.val_loss for r in runs),
            "bits_per_char": statistics.fmean(r.bits_per_char for r in runs),
            "score": statistics.fmean(scores), "spread": statistics.stdev(scores) if len(scores) > 1 else None,
            "steps": round(statistics.fmean(r.steps for r in runs)),
            "tokens_per_second": statistics.fmean(r.tokens_per_second for r in runs),
            "parameters": runs[0].parameters,
        })
    entries.sort(key=lambda e: e["score"])
    best = entries[0] if entries else None
    for rank, entry in enumerate(entries, start=1):
        entry["rank"] = rank
        if entry is best:
            entry["verdict"] = "best"
        elif entry["spread"] is None or best["spread"] is None:
            entry["verdict"] = f"{entry['score'] - best['score']:+.4f} (one seed: no noise estimate)"
        else:
            noise = max(entry["spread"], best["spread"])
            gap = entry["score"] - best["score"]
            entry["verdict"] = f"{gap:+.4f}, within noise (spread {noise:.4f})" if gap < noise else f"{gap:+.4f}, real"
    return entries


def leaderboard_rows(results: list[RunResult]) -> list[list]:
    """The leaderboard in LEADERBOARD_HEADERS order, for a table."""
    return [[e["rank"], e["setting"], round(e["val_loss"], 4), round(e["bits_per_char"], 4),
             None if e["spread"] is None else round(e["spread"], 4), e["verdict"], e["steps"],
             round(e["tokens_per_second"]), e["parameters"]] for e in leaderboard(results)]


CSV_FIELDS = ["setting", "value", "seed", "val_loss", "best_val_loss", "bits_per_char", "steps", "tokens_seen",
              "train_seconds", "tokens_per_second", "parameters", "tokenizer", "checkpoint"]


def results_csv(results: list[RunResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for r in results:
        writer.writerow([r.label, json.dumps(r.value), r.seed, r.val_loss, r.best_val_loss, r.bits_per_char, r.steps,
                         r.tokens_seen, round(r.train_seconds, 3), round(r.tokens_per_second, 1), r.parameters,
                         r.tokenizer, r.checkpoint or ""])
    return out.getvalue()


def results_json(spec: AblationSpec, results: list[RunResult]) -> str:
    runs = [{**dataclasses.asdict(r), "tokens_per_second": r.tokens_per_second} for r in results]
    return json.dumps({"spec": dataclasses.asdict(spec), "ranked_by": ranked_by(results), "runs": runs,
                       "leaderboard": leaderboard(results)}, indent=1)


def write_results(spec: AblationSpec, results: list[RunResult], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.csv").write_text(results_csv(results), encoding="utf-8")
    (out / "results.json").write_text(results_json(spec, results), encoding="utf-8")
    return out / "results.csv", out / "results.json"

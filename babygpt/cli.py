"""``python -m babygpt``: train, finetune, sample, eval, export, ablate and list, on the command line.

Every model and training hyperparameter is a flag of ``train``; the flags are made from the
config dataclasses (their ``help`` metadata), so a new field is a new flag with no edit here.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import signal
import sys
from pathlib import Path

from . import checkpoint, tracking
from .data import BUILTIN, Dataset, is_builtin, load_text, val_lines
from .evaluation import addition_accuracy, split_loss
from .lora import TARGETS, LoRAConfig
from .models import FAMILIES, PRESETS
from .runs import DEFAULT_PRESET, FINETUNE_DEFAULTS, fit_to_vocabulary, new_finetune, new_run, resume_run
from .sampling import stream
from .trainer import TrainConfig, pick_device


def model_fields() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every model config field except vocab_size, with the families that have it."""
    fields: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for family in FAMILIES.values():
        for f in dataclasses.fields(family.config_class):
            if f.name != "vocab_size":
                fields.setdefault(f.name, (f, []))[1].append(family.name)
    return fields


def add_field_flag(group, f: dataclasses.Field, note: str = "", defaults: dict | None = None) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f"{f.metadata.get('help', '')}{note} (default {(defaults or {}).get(f.name, f.default)!r})"
    kind = type(f.default)  # every config field has a plain int, float, bool or str default
    if kind is bool:
        group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    else:
        group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m babygpt",
                                     description="Build, train and sample tiny language models.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_finetune_command(commands)
    add_sample_command(commands)
    add_eval_command(commands)
    add_export_command(commands)
    add_ablate_command(commands)
    commands.add_parser("list", help="list model families, presets and built-in corpora")
    return parser


def add_train_command(commands) -> None:
    train = commands.add_parser("train", help="train a model",
                                description="Train a model and save its checkpoint directory.")
    train.add_argument("--preset",
                       help=f"a named recipe: {', '.join(PRESETS)} (default {DEFAULT_PRESET} unless --family is given)")
    train.add_argument("--family", choices=list(FAMILIES), help="model family, when not taken from --preset")
    train.add_argument("--data",
                       help=(f"built-in corpus ({', '.join(BUILTIN)}, addition:N) or a UTF-8 text file (default "
                             f"shakespeare; on --resume, the run's own)"))
    train.add_argument("--out", default="out/run", help="checkpoint directory to write (default out/run)")
    train.add_argument("--resume", action="store_true",
                       help=("continue the run saved in --out with its model, tokenizer and settings; training flags "
                             "(e.g. --max-iters) override its settings"))
    train.add_argument("--tokenizer", choices=["char", "bpe"],
                       help="char: one token per character; bpe: byte-level BPE trained on the corpus (default char)")
    train.add_argument("--bpe-vocab-size", type=int, help="vocabulary size of the BPE tokenizer (default 512)")
    model_group = train.add_argument_group("model hyperparameters (the family's default or the preset's value unless "
                                           "given)")
    for f, families in model_fields().values():
        note = "" if len(families) == len(FAMILIES) else f" [{', '.join(families)}]"
        add_field_flag(model_group, f, note)
    train_group = train.add_argument_group("training hyperparameters")
    for f in dataclasses.fields(TrainConfig):
        add_field_flag(train_group, f)
    add_tracker_flags(train)


def add_tracker_flags(command) -> None:
    from .tracking import INSTALL, TRACKERS

    command.add_argument("--tracker", choices=TRACKERS,
                         help=f"also log every training event to this tracker (optional: {INSTALL}; `trackio show` "
                              "opens its dashboard)")
    command.add_argument("--tracker-project", default="babygpt", help="the tracker's project (default babygpt)")


def add_finetune_command(commands) -> None:
    finetune = commands.add_parser(
        "finetune", help="fine-tune a trained model on new text (LoRA adapters, or --full)",
        description="Train LoRA adapters on a frozen base checkpoint (the output directory holds only the "
                    "adapter, a few hundred KB), or with --full every weight of a copy of the base. Every "
                    "evaluation reports val loss on the new corpus and on the base's own corpus.")
    finetune.add_argument("--base", help="the base checkpoint: a directory or a shipped name (gpt, llama, …)")
    finetune.add_argument("--data",
                          help="the new corpus: built-in name or UTF-8 text file (on --resume, the run's own)")
    finetune.add_argument("--out", default="out/finetune", help="directory to write (default out/finetune)")
    finetune.add_argument("--resume", action="store_true", help="continue the fine-tune saved in --out")
    finetune.add_argument("--full", action="store_true", help="train every weight instead of LoRA adapters")
    lora_defaults = LoRAConfig()
    finetune.add_argument("--lora-r", type=int, help=f"adapter rank r (default {lora_defaults.r})")
    finetune.add_argument("--lora-alpha", type=float,
                          help=f"adapter scale is alpha / r (default {lora_defaults.alpha:g})")
    finetune.add_argument("--lora-dropout", type=float,
                          help=f"dropout on the adapters' input (default {lora_defaults.dropout:g})")
    finetune.add_argument("--lora-targets",
                          help=f"comma-separated, from {','.join(TARGETS)} (default {','.join(lora_defaults.targets)})")
    finetune.add_argument("--drop-unknown", action="store_true",
                          help="drop the corpus's characters that a character-level base has no token for")
    finetune_group = finetune.add_argument_group("training hyperparameters")
    for f in dataclasses.fields(TrainConfig):
        add_field_flag(finetune_group, f, defaults=FINETUNE_DEFAULTS)
    add_tracker_flags(finetune)


def add_sample_command(commands) -> None:
    sample = commands.add_parser("sample", help="generate text from a checkpoint")
    sample.add_argument("checkpoint", help="checkpoint or adapter directory, or a shipped name")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate (default 500)")
    sample.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random (default 0.8)")
    sample.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = all; default 0)")
    sample.add_argument("--top-p", type=float, default=1.0,
                        help="sample among the likeliest tokens holding this much probability (default 1 = all)")
    sample.add_argument("--seed", type=int, default=0,
                        help="random seed: the same seed gives the same text (default 0)")
    sample.add_argument("--stop", action="append", default=[],
                        help="stop once the new text contains this string (repeatable)")
    sample.add_argument("--no-cache", action="store_true",
                        help="re-run the whole context every token (slow; for checking the KV cache)")
    sample.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    sample.add_argument("--fast-kernels", action="store_true",
                        help="time torch's and oneDNN's one-row matrix product on this machine for each of the "
                             "model's matrices and use the faster (babygpt.kernels; helps large models on some CPUs)")
    sample.add_argument("--bf16-weights", action="store_true",
                        help="generate with a bf16 copy of the weights (half the bytes per token; pays where the CPU "
                             "has bf16 instructions, see babygpt.machine; an LSTM keeps float32)")


def add_eval_command(commands) -> None:
    evaluate = commands.add_parser("eval", help="val loss and bits per character of a checkpoint")
    evaluate.add_argument("checkpoint", help="checkpoint or adapter directory, or a shipped name")
    evaluate.add_argument("--data", help="corpus to evaluate on (default: the one it was trained on)")
    evaluate.add_argument("--split", choices=["train", "val"], default="val", help="which split (default val)")
    evaluate.add_argument("--drop-unknown", action="store_true",
                          help=("drop the corpus's characters the model has no token for (as a fine-tune with "
                                "--drop-unknown did)"))
    evaluate.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")


def add_export_command(commands) -> None:
    export = commands.add_parser(
        "export", help="write a checkpoint in transformers' layout (gpt as GPT-2, llama as Llama)",
        description="Write config.json and model.safetensors that transformers.AutoModelForCausalLM loads with the "
                    "same logits. A LoRA adapter is exported merged into its base.")
    export.add_argument("checkpoint", help="checkpoint or adapter directory, or a shipped name")
    export.add_argument("--out", required=True, help="directory to create")
    export.add_argument("--peft", action="store_true",
                        help=("a LoRA adapter as OUT/adapter in PEFT's layout, beside its base in OUT/base (instead of "
                              "merged)"))


def add_ablate_command(commands) -> None:
    from .ablation import MAX_SEEDS, MAX_VALUES

    ablate = commands.add_parser(
        "ablate", help="train one base several times, one knob changed, and rank the runs",
        description=("Every run gets the same seed(s) and the same wall-clock budget; the leaderboard ranks the "
                     "settings by val loss at the budget (bits per character when the tokenizer is the knob). "
                     "OUT gets one checkpoint per run, results.csv and results.json."))
    ablate.add_argument("--preset", help=f"the base (default {DEFAULT_PRESET})")
    ablate.add_argument("--base", help=("or a trained model's settings as the base: a checkpoint directory or a "
                                        "shipped name (its corpus too, unless --data says otherwise)"))
    ablate.add_argument("--knob", required=True,
                        help=("what to change: a model or training setting of the base (n_layer, dropout, "
                              "learning_rate, optimizer, …), family, or tokenizer"))
    ablate.add_argument("--values", required=True,
                        help=f"2 to {MAX_VALUES} comma-separated values, e.g. 1,2,4 or char,bpe-512 or adamw,muon")
    ablate.add_argument("--max-seconds", type=float, default=20.0, help="wall-clock budget of each run (default 20)")
    ablate.add_argument("--seeds", type=int, default=1,
                        help=f"runs per value, seeds SEED, SEED+1, … (1 to {MAX_SEEDS}; default 1)")
    ablate.add_argument("--seed", type=int, default=1337, help="the first seed (default 1337)")
    ablate.add_argument("--data", help="built-in corpus or a UTF-8 text file (default shakespeare, or --base's)")
    ablate.add_argument("--tokenizer", choices=["char", "bpe"], help="the base's tokenizer (default char)")
    ablate.add_argument("--bpe-vocab-size", type=int, help="the base's BPE vocabulary size (default 512)")
    ablate.add_argument("--out", default="out/ablation", help="directory to write (default out/ablation)")


def run_ablate(args) -> int:
    from .ablation import (
        LEADERBOARD_HEADERS,
        AblationSpec,
        base_from_checkpoint,
        leaderboard_rows,
        plan,
        ranked_by,
        run_ablation,
        split_values,
    )

    base = {"preset": args.preset or DEFAULT_PRESET}
    if args.base:
        if args.preset:
            raise ValueError("--preset or --base, not both: the base is a preset or a trained model's settings")
        base = base_from_checkpoint(checkpoint.read_config(checkpoint.find_checkpoint(args.base)))
    given = {"corpus": args.data, "tokenizer": args.tokenizer, "bpe_vocab_size": args.bpe_vocab_size}
    spec = AblationSpec(args.knob, split_values(args.values), max_seconds=args.max_seconds, seeds=args.seeds,
                        seed=args.seed, **{**base, **{k: v for k, v in given.items() if v is not None}})
    runs = plan(spec)
    print(f"{len(runs)} runs of {args.base or spec.preset}, {args.knob} in {{{', '.join(spec.values)}}}, "
          f"{args.max_seconds:g} s each, into {args.out}")
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: (stopping.append(True), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    for event in run_ablation(spec, args.out, runs, stop=lambda: bool(stopping)):
        if event.kind == "start":
            print(f"[{event.index + 1}/{event.total}] {event.run.label}, seed {event.run.seed}")
        elif event.kind == "train" and event.train_event.kind == "eval":
            e = event.train_event
            print(f"    step {e.step:,} ({e.elapsed:.0f} s): train {e.train_loss:.4f}, val {e.val_loss:.4f}")
        elif event.kind == "finished":
            r = event.result
            print(f"    val {r.val_loss:.4f} at the budget ({r.bits_per_char:.4f} bits/char) after {r.steps:,} steps, "
                  f"{r.tokens_per_second:,.0f} tokens/s")
        elif event.kind == "done":
            results = event.results
    rows = leaderboard_rows(results)
    print(f"\nleaderboard, ranked by {ranked_by(results).replace('_', ' ')}:")
    widths = [max(len(str(x)) for x in column) for column in zip(LEADERBOARD_HEADERS, *rows)]
    for row in [LEADERBOARD_HEADERS, *rows]:
        print("  ".join(str("" if x is None else x).ljust(w) for x, w in zip(row, widths)).rstrip())
    print(f"results: {Path(args.out) / 'results.csv'}, {Path(args.out) / 'results.json'}")
    return 0


def start_distributed(device: str | None) -> bool:
    """Under ``torchrun`` (WORLD_SIZE > 1) join the process group; whether we did."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        init_distributed(device or "auto")
    return distributed


def training_flags(args, distributed: bool) -> dict:
    """The TrainConfig flags given; under torchrun on GPUs each process takes its own GPU."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    train = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if distributed and "device" not in train and os.environ.get("LOCAL_RANK") and pick_device().type == "cuda":
        train["device"] = f"cuda:{os.environ['LOCAL_RANK']}"
    return train


def train_and_render(trainer, distributed: bool, args=None) -> int:
    tracker = None
    if args is not None and args.tracker and trainer.rank == 0:  # one process logs, as one prints
        tracker = tracking.make_tracker(args.tracker, args.tracker_project, Path(args.out).name, trainer.saved_config())
    # First Ctrl-C: finish the current step, evaluate, save. A second one aborts.
    signal.signal(signal.SIGINT, lambda *_: (trainer.stop(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    render_training(trainer, show=trainer.rank == 0, tracker=tracker)
    if distributed:
        shutdown_distributed()
    return 0


def run_train(args) -> int:
    tracking.require(args.tracker)
    distributed = start_distributed(args.device)
    all_fields = model_fields()
    model = {name: getattr(args, name) for name in all_fields if getattr(args, name) is not None}
    train = training_flags(args, distributed)
    if args.resume:
        fixed = [f"--{k.replace('_', '-')}" for k in model] + [
            flag for flag, given in (("--preset", args.preset), ("--family", args.family),
                                     ("--tokenizer", args.tokenizer), ("--bpe-vocab-size", args.bpe_vocab_size))
            if given
        ]
        if fixed:
            raise ValueError(f"--resume keeps the model and tokenizer of {args.out}; drop {', '.join(fixed)}")
        trainer = resume_run(args.out, args.data, train)
    else:
        family = args.family or (PRESETS[args.preset][0] if args.preset in PRESETS else None)
        for name in model:
            if family and family not in all_fields[name][1]:
                raise ValueError(f"--{name.replace('_', '-')} does not apply to the {family} family")
        given = {"tokenizer": args.tokenizer, "bpe_vocab_size": args.bpe_vocab_size}
        trainer = new_run(args.data or "shakespeare", args.family, args.preset, model, train, out_dir=args.out,
                          **{k: v for k, v in given.items() if v is not None})
    return train_and_render(trainer, distributed, args)


def run_finetune(args) -> int:
    tracking.require(args.tracker)
    distributed = start_distributed(args.device)
    train = training_flags(args, distributed)
    lora_flags = {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                  "targets": args.lora_targets and tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())}
    lora_flags = {k: v for k, v in lora_flags.items() if v is not None}
    if args.resume:
        fixed = [f"--lora-{k}" for k in lora_flags] + [
            flag for flag, given in (("--base", args.base), ("--full", args.full),
                                     ("--drop-unknown", args.drop_unknown))
            if given
        ]
        if fixed:
            raise ValueError(f"--resume keeps the base and adapter settings of {args.out}; drop {', '.join(fixed)}")
        trainer = resume_run(args.out, args.data, train)
    else:
        if not args.base or not args.data:
            raise ValueError("--base and --data are required: the checkpoint to start from and the corpus to "
                             "fine-tune on")
        if args.full and lora_flags:
            raise ValueError(f"--full trains every weight; drop {', '.join('--lora-' + k for k in lora_flags)}")
        lora = None if args.full else LoRAConfig(**lora_flags)
        trainer = new_finetune(args.base, args.data, lora, train, args.out, drop_unknown=args.drop_unknown)
        dropped = trainer.run_info.get("dropped_characters")
        if dropped and trainer.rank == 0:
            print(f"dropped {dropped:,} characters of {args.data} that {args.base}'s vocabulary lacks")
    return train_and_render(trainer, distributed, args)


def init_distributed(device: str) -> None:
    import torch
    import torch.distributed as dist

    backend = "nccl" if pick_device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend)


def shutdown_distributed() -> None:
    """Leave together. Rank 0 is the last to finish (it writes the checkpoint); a process whose
    peer has already torn gloo down while it still holds a connection can abort (SIGABRT) on
    exit, failing a run that succeeded."""
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def render_training(trainer, show: bool = True, tracker=None) -> None:
    """Draw the run's events: a progress bar with loss, tokens/s and ETA, eval lines, samples; and
    hand each to ``tracker`` (``babygpt.tracking``) where there is one."""
    from tqdm import tqdm

    model = trainer.model
    if show:
        trainable = model.num_parameters(trainable_only=True)
        print(
            f"{type(model).__name__}: {model.num_parameters():,} parameters"
            + (f" ({trainable:,} trainable, {100 * trainable / model.num_parameters():.2f} %)"
               if trainable != model.num_parameters() else "")
            + f", vocabulary {model.config.vocab_size}, "
            f"{len(trainer.dataset.train):,} train / {len(trainer.dataset.val):,} val tokens, device {trainer.device}"
            + (f", {trainer.world_size} processes" if trainer.world_size > 1 else "")
        )
    bar = tqdm(total=trainer.config.max_iters, initial=trainer.step, disable=not show, unit="step", dynamic_ncols=True)
    try:
        for event in trainer.run():
            if tracker is not None:
                tracker.log(event)
            render_event(bar, event, show)
    finally:
        if tracker is not None:
            tracker.finish()


def render_event(bar, event, show: bool) -> None:
    if event.kind == "step":
        bar.update(event.step - bar.n)
        bar.set_postfix_str(f"loss {event.loss:.4f}, {event.tokens_per_sec:,.0f} tok/s, MFU {100 * event.mfu:.1f} "
                            f"%, "
                            f"ETA {format_seconds(event.eta)}")
    elif event.kind == "eval" and show:
        others = "".join(f", val on {name} {loss:.4f}" for name, loss in (event.other_val_loss or {}).items())
        accuracy = f", exact-match accuracy {event.accuracy:.0%}" if event.accuracy is not None else ""
        bar.write(f"step {event.step}: train {event.train_loss:.4f}, val {event.val_loss:.4f} (best "
                  f"{event.best_val_loss:.4f}){others}{accuracy}")
        if event.sample:
            bar.write("--- sample ---\n" + event.sample.strip("\n") + "\n--------------")
    elif event.kind == "done":
        bar.close()
        if show:
            where = f"; checkpoint in {event.checkpoint}" if event.checkpoint else ""
            best = f"{event.best_val_loss:.4f}" if event.best_val_loss is not None else "n/a"
            print(f"done ({event.reason}) at step {event.step} after {format_seconds(event.elapsed)}: best val "
                  f"loss {best}{where}")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_sample(args) -> int:
    loaded = checkpoint.load_checkpoint(checkpoint.find_checkpoint(args.checkpoint), pick_device(args.device))
    if args.fast_kernels:
        from .kernels import fastest_linear

        report = fastest_linear(loaded.model)
        onednn, column = (sum(row["kernel"] == kernel for row in report.values()) for kernel in ("onednn", "column"))
        print(f"fast kernels: oneDNN for {onednn}, column-major weights for {column} of {len(report)} matrix shapes "
              "(measured here)", file=sys.stderr)
    if args.bf16_weights:
        from .kernels import bfloat16_weights

        loaded.model = bfloat16_weights(loaded.model)
    steps = stream(
        loaded.model, loaded.tokenizer, args.prompt, args.max_new_tokens, stop_strings=args.stop,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed, use_cache=not args.no_cache,
    )
    first = next(steps, None)  # settings are checked here, before anything is printed
    print(args.prompt, end="", flush=True)
    if first is not None:
        for step in itertools.chain([first], steps):
            print(step.text, end="", flush=True)
    print()
    return 0


def run_eval(args) -> int:
    loaded = checkpoint.load_checkpoint(checkpoint.find_checkpoint(args.checkpoint), pick_device(args.device))
    data = args.data or loaded.config.get("corpus")
    if not data:
        raise ValueError("the checkpoint does not name its corpus; pass --data")
    # A fine-tune that dropped the characters its base has no token for is evaluated the same way.
    drop = args.drop_unknown or bool(loaded.config.get("drop_unknown") and data == loaded.config.get("corpus"))
    text, dropped = fit_to_vocabulary(load_text(data), loaded.tokenizer, drop)
    dataset = Dataset.from_text(text, loaded.tokenizer, loaded.model.config.block_size)
    result = split_loss(loaded.model, dataset, loaded.tokenizer, args.split, args.batch_size)
    print(
        f"{args.split} loss {result['loss']:.4f} nats/token, {result['bits_per_char']:.4f} bits/char "
        f"over {result['tokens']:,} tokens ({result['characters']:,} characters) of {data}"
        + (f" ({dropped:,} characters the model has no token for dropped)" if dropped else "")
    )
    if is_builtin(data) and str(data).startswith("addition") and args.split == "val":
        problems = val_lines(text, dataset.val_start(loaded.tokenizer))[:500]
        accuracy = addition_accuracy(loaded.model, loaded.tokenizer, problems)
        print(f"exact-match accuracy {accuracy:.1%} on {len(problems)} val problems (greedy decoding)")
    return 0


def run_export(args) -> int:
    from .export import export_peft, export_transformers

    if args.peft:
        out = export_peft(args.checkpoint, args.out)
        print(f"wrote the base to {out}/base and the adapter to {out}/adapter: load them with "
              f"peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(out / 'base')!r}), "
              f"{str(out / 'adapter')!r})")
        return 0
    out = export_transformers(args.checkpoint, args.out)
    print(f"wrote {out}/config.json and model.safetensors: load them with "
          f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def run_list(_args) -> int:
    print("families:")
    for family in FAMILIES.values():
        print(f"  {family.name:8s} {family.summary}")
    print("presets:")
    for name, (family, settings) in PRESETS.items():
        model = ", ".join(f"{k}={v}" for k, v in settings.get("model", {}).items())
        print(f"  {name:22s} {family:7s} {model}")
    print("corpora: " + ", ".join(BUILTIN) + ", addition:N, or a path to a UTF-8 text file")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": run_train, "finetune": run_finetune, "sample": run_sample, "eval": run_eval,
               "export": run_export, "ablate": run_ablate, "list": run_list}[args.command]
    try:
        return command(args)
    except (ValueError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

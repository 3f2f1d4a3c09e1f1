"""An ablation through the app: 3 values × 20 s should finish within 75 s of wall time.

What it does
------------
Starts ``python app.py`` on 127.0.0.1 and, as the page does, plans an ablation of the ``gpt``
preset's ``n_layer`` over 1, 2, 4 (``/ablate``) and runs it one queued event per run
(``/ablation_run``, each in the trainer's queue), timing from the click to the last answer. The
runs' own training time (their wall-clock budgets, evaluations included) is read back from the
results; the rest of the wall time is the queue and the bookkeeping: planning, tokenizing the
corpus and building each model, the final evaluation and save, writing the results, and every
round trip. Goals: the whole ablation within 75 s; queue and bookkeeping under 15 s in all.

Usage: ``python -m bench.ablation_speed`` (about 1.5 minutes on 2 cores), ``--values 1,2,4
--seconds 20 --json PATH``. Stdout carries the markdown report.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from babygpt.machine import describe, load_average, log
from bench.app_speed import running_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gpt")
    parser.add_argument("--knob", default="n_layer")
    parser.add_argument("--values", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=20.0, help="wall-clock budget of each run")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    from gradio_client import Client

    facts = describe()
    values = [v for v in args.values.split(",") if v]
    with running_app() as (_, url, start_seconds):
        log(f"app up in {start_seconds:.1f} s; ablating {args.knob} over {args.values}, {args.seconds:g} s each")
        client = Client(url, verbose=False, analytics_enabled=False)
        load_before = load_average()
        started = time.perf_counter()
        status, _, _, _, ticket = client.predict(args.preset, args.knob, args.values, 1, args.seconds, "shakespeare",
                                                 api_name="/ablate")
        planned = time.perf_counter() - started
        answers, run_walls = [], []
        while isinstance(ticket, str) and ticket:
            before = time.perf_counter()
            answers.append(client.predict(ticket, api_name="/ablation_run"))
            run_walls.append(time.perf_counter() - before)
            ticket = answers[-1][-1]
        wall = time.perf_counter() - started
        load_after = load_average()
    final_status, _, board, files, _ = answers[-1]
    results_csv = next(Path(f) for f in files if f.endswith(".csv"))
    rows = list(csv.DictReader(results_csv.open()))
    training = sum(float(r["train_seconds"]) for r in rows)
    bookkeeping = wall - training
    print("## An ablation through the app\n")
    print(f"- machine: {facts['cpu']}, {facts['logical cpus']} logical CPUs, torch {facts['torch']}; load average "
          f"{load_before} before, {load_after} after")
    print(f"- `{args.preset}`, `{args.knob}` ∈ {{{args.values}}}, one seed, {args.seconds:g} s per run, on "
          f"shakespeare; planned in {planned:.2f} s; {final_status.split('.')[0]}\n")
    print("| run | wall of its event (s) | its training (s) | steps | val loss at the budget |")
    print("|---|---:|---:|---:|---:|")
    for row, run_wall in zip(rows, run_walls):
        print(f"| {row['setting']} | {run_wall:.1f} | {float(row['train_seconds']):.1f} | {row['steps']} | "
              f"{float(row['val_loss']):.4f} |")
    print(f"\nWhole ablation {wall:.1f} s of wall time: {training:.1f} s training, {bookkeeping:.1f} s queue and "
          "bookkeeping (planning, building each run, its last evaluation and save, the results, every round trip).")
    budget_wall = len(values) * args.seconds + 15
    report = {
        "machine": facts, "wall_seconds": wall, "training_seconds": training, "bookkeeping_seconds": bookkeeping,
        "runs": rows, "leaderboard": board["data"],
        "goals": [
            {"goal": f"{len(values)} values × {args.seconds:g} s finish within {budget_wall:g} s of wall time",
             "status": "PASS" if wall <= budget_wall else "MISS", "shown": f"{wall:.1f} s"},
            {"goal": "queue and bookkeeping under 15 s in all", "status": "PASS" if bookkeeping < 15 else "MISS",
             "shown": f"{bookkeeping:.1f} s"},
        ],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if len(rows) == len(values) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Many visitors at once: concurrent generating sessions while trainings queue, against the app.

What it does
------------
Starts ``python app.py`` on 127.0.0.1 (its own ``TMPDIR``, so its session folders can be
counted), then at the same time:

- ``--trainers`` sessions (default 2) each train a small model on the Train tab (``/train``; one
  training runs at a time, the others wait in the queue);
- ``--sessions`` sessions (default 16) each run ``--requests`` Compares of two shipped models
  (``/compare``, 100 new tokens), one after another, as fast as they are answered.

It reports every request's latency (p50, p95, max) by kind, checks that every request completed,
that each training session lists exactly its own model and that no generating session can
sample it, and the server's resident memory (now and at its peak,
``VmRSS``/``VmHWM``) before, during and after. Session folders are counted at the end: gradio
ends a session when its page closes (``app.unload``), which API clients never do, so their
sessions end once unused for ``BABYGPT_SESSION_IDLE_SECONDS`` (``--idle-seconds``, 60 s here; an
hour by default), and the folders are counted again after that.

``--minutes M`` makes it a soak: a new crowd like that arrives as soon as the last is done, for M
minutes, while the older crowds' sessions expire. It then also reports every crowd's memory, and
checks that memory stays bounded: the last third of the crowds peaks at most 10 % above the first.
The app keeps gradio's per-session state for at most ``--max-sessions`` sessions here (100; 500
by default), so that a soak of minutes reaches the cap.

Usage: ``python -m bench.load_test`` (about 1.5 minutes on 2 cores), ``--sessions N --trainers N
--requests N --minutes M --json PATH``. Stdout carries the markdown report; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from babygpt.machine import describe, load_average, log
from bench.app_speed import GIB, memory_of, running_app

ROOT = Path(__file__).resolve().parent.parent

COMPARE_MODELS, PROMPT = ["gpt", "llama"], "Hamlet:\n"


def training_request(args) -> dict:
    """The Train tab's inputs for one small queued training of ``args.train_steps`` steps."""
    return dict(preset="gpt", n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=8,
                max_iters=args.train_steps, learning_rate=1e-3, max_seconds=0, corpus="shakespeare", upload=None,
                x_axis="step")


def compare_request(args, seed: int) -> tuple:
    """The Compare tab's inputs: both models write ``args.compare_tokens`` new tokens."""
    return (COMPARE_MODELS, PROMPT, args.compare_tokens, 1.0, 0, 1.0, seed)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wave(url: str, args) -> dict:
    """One crowd: the trainers and the generating sessions, each a new ``gradio_client`` session."""
    from gradio_client import Client

    def client() -> Client:
        return Client(url, verbose=False, analytics_enabled=False)

    crowd_done, finished = threading.Event(), threading.Semaphore(0)

    def stay(c: Client) -> None:
        """Visitors who stay until the whole crowd is done (a browser keeps its page open): their
        sessions must not idle out while slower visitors are still being served."""
        finished.release()
        while not crowd_done.wait(2.0):
            c.predict(api_name="/models")

    def trainer(i: int) -> dict:
        c = client()
        started = time.perf_counter()
        *_, names, _ = c.predict(*training_request(args).values(), api_name="/train")
        seconds = time.perf_counter() - started
        mine = [n for n in (names["choices"] if isinstance(names, dict) else names) if n.startswith("my-")]
        stay(c)
        return {"kind": "train", "seconds": seconds, "client": c, "names": mine}

    def generator(i: int) -> dict:
        c = client()
        latencies = []
        for r in range(args.requests):
            started = time.perf_counter()
            _, texts, _, _ = c.predict(*compare_request(args, 1000 * i + r), api_name="/compare")
            latencies.append(time.perf_counter() - started)
            if set(texts) != set(COMPARE_MODELS) or not all(texts.values()):
                raise RuntimeError(f"session {i}: an incomplete Compare: {sorted(texts)}")
        stay(c)
        return {"kind": "compare", "latencies": latencies, "client": c}

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.sessions + args.trainers) as pool:
        jobs = [pool.submit(trainer, i) for i in range(args.trainers)]
        time.sleep(1.0)  # the trainings are in the queue before the crowd arrives
        jobs += [pool.submit(generator, i) for i in range(args.sessions)]
        for _ in jobs:  # every visitor served (or one failed: then its result raises below)
            while not finished.acquire(timeout=1.0):
                if any(job.done() and job.exception() for job in jobs):
                    break
        crowd_done.set()
        results = [job.result() for job in jobs]  # any failed request raises here
    wall = time.perf_counter() - started

    # Isolation: each trainer's list holds its one model, and no generating session can use it
    # (trainers all name theirs "my-gpt", each in its own session).
    trained = [r for r in results if r["kind"] == "train"]
    leaks = [f"a trainer's session lists {r['names']}" for r in trained if len(r["names"]) != 1]
    for r in trained:
        r["client"].predict([r["names"][-1]], "Hi", 5, 1.0, 0, 1.0, 0, api_name="/compare")  # its own: usable
        for other in results:
            if other["kind"] == "train":
                continue
            try:
                other["client"].predict([r["names"][-1]], "Hi", 5, 1.0, 0, 1.0, 0, api_name="/compare")
                leaks.append(f"{r['names'][-1]} answered for another session")
            except Exception as error:  # the app refuses: no model of that name in this session
                if "no model named" not in str(error) and "not in the list of choices" not in str(error):
                    leaks.append(f"unexpected answer: {error}")
    return {"wall": wall, "compares": [t for r in results if r["kind"] == "compare" for t in r["latencies"]],
            "trainings": [r["seconds"] for r in trained], "leaks": leaks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=16, help="concurrent generating sessions")
    parser.add_argument("--trainers", type=int, default=2, help="sessions that each queue a training")
    parser.add_argument("--requests", type=int, default=3, help="Compares per generating session")
    parser.add_argument("--minutes", type=float, default=0,
                        help="soak: send new crowds, one after another, for this long (default: one crowd)")
    parser.add_argument("--idle-seconds", type=float, default=60,
                        help="the app's idle limit for sessions in this test (an hour by default); longer than a crowd")
    parser.add_argument("--max-sessions", type=int, default=100,
                        help="the app's cap on sessions gradio keeps (BABYGPT_MAX_SESSIONS, 500 by default): lower, "
                             "so a soak reaches it")
    parser.add_argument("--compare-tokens", type=int, default=100, help="new tokens each model writes per Compare")
    parser.add_argument("--train-steps", type=int, default=300, help="steps of each queued training")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    from gradio_client import Client

    tmp = tempfile.mkdtemp(prefix="babygpt-load-")
    os.environ["TMPDIR"] = tmp  # inherited by the app: its session folders land here
    os.environ["BABYGPT_SESSION_IDLE_SECONDS"] = str(args.idle_seconds)
    os.environ["BABYGPT_MAX_SESSIONS"] = str(args.max_sessions)
    samples, done = [], threading.Event()
    env = describe()
    with running_app() as (process, url, _):
        idle = memory_of(process.pid)["VmRSS"]

        def watch_memory():
            while not done.wait(0.2):
                samples.append((time.perf_counter(), memory_of(process.pid)["VmRSS"]))

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        started = time.perf_counter()
        waves = []
        while not waves or time.perf_counter() - started < 60 * args.minutes:
            wave_started = time.perf_counter()
            waves.append(wave(url, args))
            during = [rss for t, rss in samples if t >= wave_started]
            waves[-1].update(rss_peak=max(during, default=idle), rss_after=memory_of(process.pid)["VmRSS"],
                             folders=len(list(Path(tmp).glob("babygpt-session-*"))))
            log(f"crowd {len(waves)} done in {waves[-1]['wall']:.0f} s; server RSS {waves[-1]['rss_after'] / GIB:.2f} "
                f"GiB, {waves[-1]['folders']} session folders")
        wall = time.perf_counter() - started
        done.set()
        memory = memory_of(process.pid)
        folders = sorted(p.name for p in Path(tmp).glob("babygpt-session-*"))
        # API clients never close a page: their sessions end after BABYGPT_SESSION_IDLE_SECONDS unused.
        time.sleep(args.idle_seconds + 1)
        newcomer = Client(url, verbose=False, analytics_enabled=False)
        newcomer.predict(*compare_request(args, 0), api_name="/compare")  # its arrival sweeps them
        folders_after_idle = sorted(p.name for p in Path(tmp).glob("babygpt-session-*"))

    compares = [t for w in waves for t in w["compares"]]
    trainings = [t for w in waves for t in w["trainings"]]
    leaks = [leak for w in waves for leak in w["leaks"]]
    expected = len(waves) * (args.sessions * args.requests + args.trainers)
    report = {
        "env": {**env, "load average at the end": load_average()}, "wall_seconds": wall, "crowds": len(waves),
        "requests": len(compares) + len(trainings),
        "compare": {"n": len(compares), "p50": statistics.median(compares), "p95": percentile(compares, 0.95),
                    "max": max(compares)},
        "train": {"n": len(trainings), "seconds": trainings},
        "rss": {"idle": idle, "peak_during": max((rss for _, rss in samples), default=idle),
                "peak_ever": memory["VmHWM"], "after": memory["VmRSS"]},
        "isolation_failures": leaks, "session_folders": len(folders),
        "session_folders_after_idle": len(folders_after_idle),
        "per_crowd": [{k: w[k] for k in ("wall", "rss_peak", "rss_after", "folders")} for w in waves],
    }
    title = f"{args.sessions} sessions x {args.requests} Compares while {args.trainers} trainings queue"
    soak = f", {len(waves)} crowds one after another for {wall / 60:.0f} minutes" if len(waves) > 1 else ""
    print(f"# babygpt load test: {title}{soak}\n")
    print(f"- {env['cpu']}, {env['logical cpus']} logical CPUs; load average {env['load average']} -> "
          f"{report['env']['load average at the end']}; {wall:.0f} s in all\n")
    print("| requests | completed | p50 | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    c = report["compare"]
    compare_label = f"{len(COMPARE_MODELS)} models x {args.compare_tokens} tokens"
    print(f"| Compare ({compare_label}) | {c['n']} of {len(waves) * args.sessions * args.requests} | "
          f"{c['p50']:.2f} s | {c['p95']:.2f} s | {c['max']:.2f} s |")
    print(f"| training, queued ({args.train_steps} steps each) | {len(trainings)} of {len(waves) * args.trainers} | "
          f"{statistics.median(trainings):.1f} s | | {max(trainings):.1f} s |")
    r = report["rss"]
    print(f"\n- server memory: idle {r['idle'] / GIB:.2f} GiB, highest while loaded {r['peak_during'] / GIB:.2f} GiB, "
          f"after {r['after'] / GIB:.2f} GiB")
    print(f"- isolation: {'no model of one session was usable by another' if not leaks else leaks}")
    print(f"- session folders: {len(folders)} when every session was done; {len(folders_after_idle)} once they had "
          f"been idle {args.idle_seconds:.0f} s and a newcomer arrived (the newcomer's own)")
    report["goals"] = [
        {"goal": f"{title}: every request completes", "status": "PASS" if report["requests"] == expected else "FAIL",
         "shown": f"{report['requests']} of {expected}"},
        {"goal": f"Compare latency under that load ({compare_label})", "status": "INFO",
         "shown": f"p50 {c['p50']:.2f} s, p95 {c['p95']:.2f} s"},
        {"goal": "no session can use another's model", "status": "FAIL" if leaks else "PASS",
         "shown": "; ".join(leaks) or "none could"},
        {"goal": "idle sessions end with their files", "status": "PASS" if len(folders_after_idle) == 1 else "FAIL",
         "shown": f"{len(folders)} session folders -> {len(folders_after_idle)}"},
        {"goal": "server memory under load", "status": "INFO", "shown": f"{r['peak_during'] / GIB:.2f} GiB at most"},
    ]
    bounded = True
    if len(waves) >= 6:
        # Bounded: the crowds of the last third peak no higher than those of the first third, give
        # or take 10 % (the allocator's own noise); a leak grows with every crowd.
        third = len(waves) // 3
        early, late = max(w["rss_peak"] for w in waves[:third]), max(w["rss_peak"] for w in waves[-third:])
        bounded = late <= 1.10 * early
        report["rss"].update(first_third_peak=early, last_third_peak=late)
        print(f"\n## Memory over {len(waves)} crowds\n")
        print("| crowd | seconds | peak RSS | RSS after | session folders |")
        print("|---:|---:|---:|---:|---:|")
        for i, w in enumerate(waves, 1):
            print(f"| {i} | {w['wall']:.0f} | {w['rss_peak'] / GIB:.2f} GiB | {w['rss_after'] / GIB:.2f} GiB | "
                  f"{w['folders']} |")
        report["goals"].append({
            "goal": f"memory stays bounded over {wall / 60:.0f} minutes (last third of the crowds peaks at most "
                    "10 % above the first third)", "status": "PASS" if bounded else "FAIL",
            "shown": f"{early / GIB:.2f} GiB -> {late / GIB:.2f} GiB"})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    ok = not leaks and len(folders_after_idle) == 1 and report["requests"] == expected and bounded
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

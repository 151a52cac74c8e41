"""Run the benchmarks: ``python -m tests.bench [--quick] [--only protocol|machines|sweep|outbox|web] [--profile]``.

Prints a table per benchmark and writes everything (with each run's raw timings) as JSON to
``tests/bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("SQLAlchemy", "transitions", "cryptography"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            out[dist] = importlib_metadata.version(dist)
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run: 40 cases, 10,000 instances; "
                        "10,000 timers (1,000 due), a 15 s lag run with a 3 s scheduler interval")
    parser.add_argument("--only", choices=("protocol", "machines", "sweep", "outbox", "web"), help="run one benchmark")
    parser.add_argument("--cases", type=int, help="cases for the protocol benchmark (default 300, quick 40)")
    parser.add_argument("--rounds", type=int, help="rounds of the protocol benchmark; the median ratio "
                        "is reported (default 1)")
    parser.add_argument("--instances", type=int, help="instances for the machine benchmark (default 100000, "
                        "quick 10000)")
    parser.add_argument("--timers", type=int, help="pending timers for the sweep benchmark (default 100000, "
                        "quick 10000)")
    parser.add_argument("--due", type=int, help="of which due now (default a tenth)")
    parser.add_argument("--lag-seconds", type=float, help="how long timers trickle in for the lag run (default 60, "
                        "quick 15; rounded to whole intervals)")
    parser.add_argument("--interval", type=float, help="scheduler interval of the lag run (default "
                        "REPRISALS_SCHEDULER_INTERVAL's default, 15 s; quick 3 s)")
    parser.add_argument("--messages", type=int, help="outbox messages delivered over SMTP (default 10000, quick 1000)")
    parser.add_argument("--web-cases", type=int, help="cases for the page benchmark (default 100000, quick 10000)")
    parser.add_argument("--web-requests", type=int, help="requests per page (default 200, quick 50)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the protocol paths even when the services and engine ratios are within 2.0, "
                        "and the sweeps even when they meet their aim")
    parser.add_argument("--no-json", action="store_true", help="do not write a results file")
    args = parser.parse_args(argv)

    cases = args.cases or (40 if args.quick else 300)
    rounds = args.rounds or 1
    instances = args.instances or (10_000 if args.quick else 100_000)
    timers = args.timers or (10_000 if args.quick else 100_000)
    due = args.due or timers // 10
    lag_seconds = args.lag_seconds or (15.0 if args.quick else 60.0)
    interval = args.interval or (3.0 if args.quick else 15.0)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    payload: dict[str, Any] = {
        "meta": {"when": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _git_commit(),
                 "argv": sys.argv[1:] if argv is None else argv, "quick": args.quick, "cpus": os.cpu_count(),
                 "platform": platform.platform(), "versions": _versions(), "load_before": _load()},
    }
    sections: list[str] = []
    if args.only in (None, "protocol"):
        from tests.bench import bench_protocol

        log(f"1. protocol path on SQLite: {cases} cases, {rounds} round(s)")
        payload["protocol"] = bench_protocol.run(cases, rounds, force_profile=args.profile, log=log)
        sections.append(bench_protocol.render(payload["protocol"]))
    if args.only in (None, "machines"):
        from tests.bench import bench_machines

        log(f"2. machine cost: {instances:,} instances")
        payload["machines"] = bench_machines.run(instances, log=log)
        sections.append(bench_machines.render(payload["machines"]))
    if args.only in (None, "sweep"):
        from tests.bench import bench_sweep

        log(f"3. deadline sweep: {timers:,} pending timers, {due:,} due; lag over {lag_seconds:g} s at a "
            f"{interval:g} s interval")
        payload["sweep"] = bench_sweep.run(timers, due, lag_seconds=lag_seconds, interval=interval,
                                           force_profile=args.profile, log=log)
        sections.append(bench_sweep.render(payload["sweep"]))
    if args.only in (None, "outbox"):
        from tests.bench import bench_outbox

        messages = args.messages or (1_000 if args.quick else 10_000)
        log(f"4. outbox delivery over SMTP: {messages:,} messages")
        payload["outbox"] = bench_outbox.run(messages, force_profile=args.profile, log=log)
        sections.append(bench_outbox.render(payload["outbox"]))
    if args.only in (None, "web"):
        from tests.bench import bench_web

        web_cases = args.web_cases or (10_000 if args.quick else 100_000)
        web_requests = args.web_requests or (50 if args.quick else 200)
        log(f"5. pages: {web_cases:,} cases in SQLite, {web_requests} requests per page")
        payload["web"] = bench_web.run(web_cases, web_requests, log=log)
        sections.append(bench_web.render(payload["web"]))
    payload["meta"]["elapsed_s"] = time.perf_counter() - started
    payload["meta"]["load_after"] = _load()

    meta = payload["meta"]
    header = (f"reprisals benchmarks  {meta['when']}  commit {meta['commit']}  {meta['cpus']} CPUs  "
              + "  ".join(f"{k} {v}" for k, v in meta["versions"].items())
              + f"\nload average (1 min) before {meta['load_before']}, after {meta['load_after']}: other processes "
              "slow both sides of every ratio, but make the ratios noisier")
    print(header + "\n\n" + "\n\n\n".join(sections))
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nResults: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}  "
              f"({meta['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""PostgreSQL benchmark: our store against pgqueuer, procrastinate and a bare-SQL floor.

A narrow-table loop (``benchmarks.narrow``) runs too: not a queue, but what the machine
does for the simplest claim/complete/event loop, and the anchor of the store's target.
Ratios are taken between each system's median round (``--repeat R`` rounds).

    python -m benchmarks.postgres [--quick] [--jobs N] [--dsn DSN] [--output FILE.json]

Everything runs in one fresh database (``wq_bench_<pid>``, dropped afterwards) on
the server of ``--dsn`` (default ``$WORKQUEUE_BENCH_PG``, else
``postgresql://root@127.0.0.1:5432/test``), each system in its own schema, one
after the other, in one process. See docs/benchmarks.md for what each number
means and how the comparison is kept fair.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import math
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from benchmarks import (
    anchor_pgqueuer,
    anchor_procrastinate,
    executor,
    floor,
    latency,
    narrow,
    ours,
)
from benchmarks._db import fresh_database
from benchmarks._env import machine, postgres, versions
from benchmarks._result import DrainResult
from benchmarks._stats import ratio

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"
SYSTEMS = ("ours", "floor", "pgqueuer", "procrastinate", "executor", "narrow")
TARGETS = {
    "ours / narrow-table loop": 0.8,
    "executor / ours": 0.85,
}
"""Issue 17's targets, on the median of each system's complete rounds."""
SCALE_RATIOS = (
    "ours / pgqueuer",
    "ours / procrastinate",
    "ours / bare-SQL floor",
    "bare-SQL floor / narrow-table loop",
    "pgqueuer / narrow-table loop",
)
"""Reported for context, with no target."""
CLAIM_LATENCY_GROWTH_TARGET = 1.2
NOTIFY_P50_TARGET_MS = 5.0

Drain = Callable[[str, int, int, int], Awaitable[DrainResult | None]]
DRAINS: dict[str, Drain] = {
    "ours": ours.drain,
    "floor": floor.drain,
    "pgqueuer": anchor_pgqueuer.drain,
    "procrastinate": anchor_procrastinate.drain,
    "executor": executor.drain,
    "narrow": narrow.drain,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.postgres", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dsn", default=os.environ.get("WORKQUEUE_BENCH_PG", DEFAULT_DSN))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (<60 s)")
    parser.add_argument("--jobs", type=int, help="items per drain (default 20000, quick 2000)")
    parser.add_argument("--claimers", type=int, default=2, help="concurrent claimers (2)")
    parser.add_argument("--batch", type=int, default=100, help="claim/complete batch size (100)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--latency-sizes",
        help="pending-queue sizes for claim latency (default 10000,1000000; quick 10000,100000)",
    )
    parser.add_argument("--latency-samples", type=int, help="claims timed per size (1000)")
    parser.add_argument("--notify-samples", type=int, help="submit→claimed samples (200)")
    parser.add_argument("--skip-latency", action="store_true", help="only the drains")
    parser.add_argument(
        "--repeat", type=int, default=1, help="drain rounds; ratios use each system's median"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile our drain; print top")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the bench database")
    parser.add_argument("--output", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2_000 if args.quick else 20_000)
    sizes = args.latency_sizes or ("10000,100000" if args.quick else "10000,1000000")
    args.latency_sizes = [int(s) for s in sizes.split(",") if s]
    args.latency_samples = args.latency_samples or (200 if args.quick else 1_000)
    args.notify_samples = args.notify_samples or (50 if args.quick else 200)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _check(value: float | None, target: float, at_least: bool = True) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    met = value >= target if at_least else value <= target
    if met:
        return "met"
    miss = (target / value if at_least else value / target) if value else math.inf
    return f"MISSED ({miss:.2f}× off)"


async def _profiled(run: Awaitable[DrainResult | None]) -> tuple[DrainResult | None, str]:
    """Run our drain with its timed phase under cProfile; the top functions by own time."""
    ours.PROFILER = cProfile.Profile()
    try:
        result = await run
    finally:
        profile, ours.PROFILER = ours.PROFILER, None
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
    return result, out.getvalue()


async def _drains(
    args: argparse.Namespace, dsn: str
) -> tuple[dict[str, DrainResult], dict[str, list[DrainResult]], str]:
    best: dict[str, DrainResult] = {}
    rounds: dict[str, list[DrainResult]] = {}
    profile_text = ""
    for round_ in range(args.repeat):
        for system in args.systems:
            gc.collect()
            print(f"# drain: {system} ({args.jobs} items, round {round_ + 1})", file=sys.stderr)
            run = DRAINS[system](dsn, args.jobs, args.claimers, args.batch)
            if args.profile and system == "ours" and round_ == 0:
                result, profile_text = await _profiled(run)
            else:
                result = await run
            if result is None:
                print(f"#   {system}: not available", file=sys.stderr)
                continue
            print(
                f"#   {_fmt(result.jobs_per_second)} jobs/s, {result.completed}/{result.submitted}"
                + (f", error: {result.error}" if result.error else ""),
                file=sys.stderr,
            )
            rounds.setdefault(system, []).append(result)
            previous = best.get(system)
            if (
                previous is None
                or not previous.complete
                or (result.complete and result.jobs_per_second > previous.jobs_per_second)
            ):
                best[system] = result
    return best, rounds, profile_text


async def _latencies(args: argparse.Namespace, dsn: str) -> list[latency.LatencyResult]:
    results = []
    for size in args.latency_sizes:
        print(f"# claim latency with {size:,} pending", file=sys.stderr)
        results.append(await latency.claim_latency(dsn, size, args.latency_samples))
    print("# submit→claimed latency", file=sys.stderr)
    results.append(await latency.notify_latency(dsn, args.notify_samples))
    return results


def _medians(rounds: dict[str, list[DrainResult]]) -> dict[str, float]:
    """Each system's median jobs/s over its complete rounds."""
    return {
        system: statistics.median(r.jobs_per_second for r in complete)
        for system, results in rounds.items()
        if (complete := [r for r in results if r.complete])
    }


def _ratios(medians: dict[str, float]) -> dict[str, float | None]:
    def rate(system: str) -> float | None:
        return medians.get(system)

    return {
        "ours / narrow-table loop": ratio(rate("ours"), rate("narrow")),
        "executor / ours": ratio(rate("executor"), rate("ours")),
        "ours / pgqueuer": ratio(rate("ours"), rate("pgqueuer")),
        "ours / procrastinate": ratio(rate("ours"), rate("procrastinate")),
        "ours / bare-SQL floor": ratio(rate("ours"), rate("floor")),
        "bare-SQL floor / narrow-table loop": ratio(rate("floor"), rate("narrow")),
        "pgqueuer / narrow-table loop": ratio(rate("pgqueuer"), rate("narrow")),
    }


def _markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["machine"].items()]
    lines += ["", "## PostgreSQL", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["postgres"].items()]
    lines += ["", "## Libraries", "", "| library | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["versions"].items()]
    lines += [
        "",
        f"## Drain: {args.jobs:,} no-op items, {args.claimers} claimers, batch {args.batch}",
        "",
        "| system | jobs/s | completed | drain s | enqueue jobs/s | settings |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for system in args.systems:
        d = report["drains"].get(system)
        if d is None:
            lines.append(f"| {system} | not available | | | | |")
            continue
        done = f"{d['completed']:,}/{d['submitted']:,}" + ("" if d["complete"] else " ⚠")
        rate = _fmt(d["jobs_per_second"]) if d["error"] is None else f"error: {d['error']}"
        lines.append(
            f"| {d['system']} | {rate} | {done} | {_fmt(d['seconds'], 2)} | "
            f"{_fmt(d['enqueue_per_second'])} | {d['settings']} |"
        )
    if args.jobs < 20_000:
        lines += ["", f"(only {args.jobs:,} items: a smoke run; the ratios are not meaningful)"]
    lines += ["", "| system | jobs/s per round | median |", "|---|---|---:|"]
    for system in args.systems:
        per_round = report["rounds"].get(system, [])
        text = " / ".join(
            _fmt(r["jobs_per_second"]) + ("" if r["complete"] else " ⚠") for r in per_round
        )
        lines.append(f"| {system} | {text} | {_fmt(report['medians'].get(system))} |")
    lines += ["", "| ratio (medians of rounds) | value | target | |", "|---|---:|---:|---|"]
    for name, value in report["ratios"].items():
        if name in TARGETS:
            target = TARGETS[name]
            lines.append(f"| {name} | {_fmt(value, 2)} | ≥ {target:g} | {_check(value, target)} |")
        else:
            lines.append(f"| {name} | {_fmt(value, 2)} | (context) | |")
    if report["latency"]:
        lines += ["", "## Latency", "", "| measurement | samples | p50 ms | p99 ms | setup s |"]
        lines.append("|---|---:|---:|---:|---:|")
        for lat in report["latency"]:
            name = lat["name"] + (f" — error: {lat['error']}" if lat["error"] else "")
            lines.append(
                f"| {name} | {lat['samples']} | {_fmt(lat['p50_ms'], 2)} | "
                f"{_fmt(lat['p99_ms'], 2)} | {_fmt(lat['setup_seconds'], 1)} |"
            )
        lines += ["", "| target | value | target | |", "|---|---:|---:|---|"]
        growth = report["claim_latency_growth"]
        lines.append(
            f"| claim p50 at {args.latency_sizes[-1]:,} / at {args.latency_sizes[0]:,} | "
            f"{_fmt(growth, 2)} | ≤ {CLAIM_LATENCY_GROWTH_TARGET:g} | "
            f"{_check(growth, CLAIM_LATENCY_GROWTH_TARGET, at_least=False)} |"
        )
        p50 = report["latency"][-1]["p50_ms"]
        lines.append(
            f"| submit→claimed p50 (ms) | {_fmt(p50, 2)} | ≤ {NOTIFY_P50_TARGET_MS:g} | "
            f"{_check(p50, NOTIFY_P50_TARGET_MS, at_least=False)} |"
        )
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every part in one fresh database and return the report."""
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "versions": versions()}
    report["postgres"] = await postgres(args.dsn)
    async with fresh_database(args.dsn, keep=args.keep_db) as dsn:
        drains, rounds, profile_text = await _drains(args, dsn)
        lat = [] if args.skip_latency else await _latencies(args, dsn)
    report["drains"] = {
        k: {
            **attrs.asdict(v),
            "jobs_per_second": v.jobs_per_second,
            "enqueue_per_second": v.enqueue_per_second,
            "complete": v.complete,
        }
        for k, v in drains.items()
    }
    report["rounds"] = {
        k: [{"jobs_per_second": r.jobs_per_second, "complete": r.complete} for r in v]
        for k, v in rounds.items()
    }
    report["medians"] = _medians(rounds)
    report["ratios"] = _ratios(report["medians"])
    report["latency"] = [attrs.asdict(x) for x in lat]
    claims = [x for x in lat if x.name.startswith("claim_next")]
    report["claim_latency_growth"] = (
        ratio(claims[-1].p50_ms, claims[0].p50_ms) if len(claims) >= 2 else None
    )
    report["parameters"] = {
        "jobs": args.jobs,
        "claimers": args.claimers,
        "batch": args.batch,
        "repeat": args.repeat,
        "latency_sizes": args.latency_sizes,
        "latency_samples": args.latency_samples,
        "notify_samples": args.notify_samples,
    }
    report["seconds"] = time.perf_counter() - started
    if profile_text:
        report["profile_ours"] = profile_text
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when some system did not complete every item."""
    args = _parse(argv)
    report = asyncio.run(run(args))
    print(_markdown(report, args))
    if report.get("profile_ours"):
        print("## cProfile of our drain (by own time)\n\n```\n" + report["profile_ours"] + "```")
    if args.output:
        with open(args.output, "w") as out:
            json.dump(report, out, indent=2, default=str)
    incomplete = [k for k, d in report["drains"].items() if not d["complete"]]
    if incomplete:
        print(f"incomplete drains: {', '.join(incomplete)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

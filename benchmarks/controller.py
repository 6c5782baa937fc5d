"""The Work controller benchmark: ``job`` Works driven to Succeeded on the fake API server.

``python -m benchmarks.controller [--works N | --quick] [--concurrency C] [--output F]``

Each system runs against a fresh fake server (``tests/support/kube``) in this process,
as a process of its own (``_controller_process``; ``--in-process`` runs it on the fake's
event loop instead); the fake's simulated Job controller completes every Job at once.
Reported per system: Works/s (first Work created → last Work terminal), API requests per
Work from the fake's request log after the first Work was created (writes:
create/update/patch/delete; reads: get/list; watches counted apart), and p50/p99 from
the fake storing a Job's ``Complete`` condition to it storing the Work's terminal phase.
The anchor is a minimal kopf operator (``anchor_kopf``) in the same run; ``floor`` is
the harness alone (the fake creating each Job and copying each outcome in-process, no
controller, no HTTP): the ceiling of any system measured here. ``docs/benchmarks.md``
has what this measures and the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks._controller_process import SpawnedRunner, run_ours, spawned
from benchmarks._env import machine
from benchmarks._kube import READS, WRITES, ControllerResult, FakeKube, measure, run_floor

LIBRARIES = ("kopf", "kubernetes_asyncio", "aiohttp", "anyio", "workqueue")
SYSTEMS = ("ours", "kopf", "floor")


def ours_runner(concurrency: int, status_delay: float = 1.0) -> Any:
    """Our controller on the fake's event loop (``--in-process``), until the stop event."""

    async def run(
        fake: FakeKube, kubeconfig: Path, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        await run_ours(kubeconfig, concurrency, status_delay, ready, stop)

    return run


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f}"


def table(results: Sequence[ControllerResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| system | Works | Succeeded | Works/s | CPU ms/Work | server CPU ms/Work"
        " | writes/Work | reads/Work | watches | p50 ms | p99 ms | settings |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        watches = r.requests.watches if r.requests else 0
        cpu = "–" if r.cpu_ms_per_work is None else f"{r.cpu_ms_per_work:.2f}"
        lines.append(
            f"| {r.system} | {r.works} | {r.succeeded} | {r.works_per_second:.1f} | {cpu}"
            f" | {r.server_cpu_seconds * 1000 / r.works:.2f}"
            f" | {r.per_work(WRITES):.2f} | {r.per_work(READS):.2f} | {watches}"
            f" | {_ms(r.percentile(50))} | {_ms(r.percentile(99))} | {r.settings} |"
        )
    return "\n".join(lines)


def breakdown(results: Sequence[ControllerResult]) -> str:
    """Steady-state requests per Work by verb and resource, one column per system."""
    keys = sorted({k for r in results if r.requests for k in r.requests.by_resource})
    lines = [
        "| request | " + " | ".join(r.system for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for key in keys:
        cells = [
            f"{(r.requests.by_resource.get(key, 0) / r.works):.2f}" if r.requests else "-"
            for r in results
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    startup = [str(r.requests.startup) if r.requests else "-" for r in results]
    discovery = [str(r.requests.discovery) if r.requests else "-" for r in results]
    errors = [str(r.requests.errors) if r.requests else "-" for r in results]
    lines.append("| (startup requests, total) | " + " | ".join(startup) + " |")
    lines.append("| (of all: discovery requests, total) | " + " | ".join(discovery) + " |")
    lines.append("| (steady-state error answers, total) | " + " | ".join(errors) + " |")
    return "\n".join(lines)


def ratios(results: Sequence[ControllerResult]) -> dict[str, Any]:
    """Ours against kopf in this run, with the issue's targets."""
    by_name = {r.system: r for r in results}
    ours, kopf = by_name.get("ours"), by_name.get("kopf")
    found: dict[str, Any] = {}
    if ours is not None:
        found["ours_writes_per_work"] = ours.per_work(WRITES)
        found["ours_reads_per_work"] = ours.per_work(READS)
        found["target_writes_le_5"] = ours.per_work(WRITES) <= 5
        found["target_no_reads"] = ours.per_work(READS) == 0
    if ours is not None and kopf is not None and kopf.complete and kopf.works_per_second:
        found["throughput_ours_over_kopf"] = ours.works_per_second / kopf.works_per_second
        found["target_throughput_2x"] = found["throughput_ours_over_kopf"] >= 2
        ours_total = ours.per_work(WRITES) + ours.per_work(READS)
        kopf_total = kopf.per_work(WRITES) + kopf.per_work(READS)
        found["requests_per_work_ours_over_kopf"] = ours_total / kopf_total if kopf_total else None
        found["target_fewer_requests"] = ours_total < kopf_total
        if ours.cpu_ms_per_work and kopf.cpu_ms_per_work:
            found["cpu_per_work_kopf_over_ours"] = kopf.cpu_ms_per_work / ours.cpu_ms_per_work
    floor = by_name.get("floor")
    if floor is not None and floor.complete and floor.works_per_second:
        for system in (ours, kopf):
            if system is not None and system.complete:
                found[f"{system.system}_share_of_floor"] = (
                    system.works_per_second / floor.works_per_second
                )
    return found


def _profile(args: argparse.Namespace, system: str) -> tuple[str, ...]:
    """The child's ``--profile`` option: ``DIR/<system>.prof`` (the last round's)."""
    return () if args.profile is None else ("--profile", str(args.profile / f"{system}.prof"))


async def run(args: argparse.Namespace) -> list[list[ControllerResult]]:
    """``args.repeat`` rounds, each running every system once, in turn."""
    rounds: list[list[ControllerResult]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            results: list[ControllerResult] = []
            for system in args.systems:
                where = "in the fake's process" if args.in_process else "own process"
                if system == "ours":
                    options: tuple[str, ...] = ("--concurrency", str(args.concurrency))
                    options += ("--status-delay", str(args.status_delay))
                    options += _profile(args, system)
                    runner = (
                        ours_runner(args.concurrency, args.status_delay)
                        if args.in_process
                        else spawned("ours", *options)
                    )
                    settings = (
                        f"concurrency {args.concurrency}, status delay {args.status_delay:g} s,"
                        f" {where}"
                    )
                elif system == "floor":
                    runner, settings = run_floor, "no controller: the fake's own cost"
                else:
                    from benchmarks.anchor_kopf import run_kopf

                    runner = (
                        run_kopf if args.in_process else spawned("kopf", *_profile(args, system))
                    )
                    settings = f"kopf defaults, posting off, {where}"
                print(
                    f"round {round_ + 1}: {system} ({args.works} Works) …",
                    file=sys.stderr,
                    flush=True,
                )
                result = await measure(
                    system,
                    runner,
                    args.works,
                    Path(tmp),
                    settings=settings,
                    timeout=args.timeout,
                    rate=args.rate,
                )
                if isinstance(runner, SpawnedRunner):
                    result = attrs.evolve(result, cpu_seconds=runner.cpu_seconds)
                results.append(result)
            rounds.append(results)
    return rounds


def best(rounds: Sequence[Sequence[ControllerResult]]) -> list[ControllerResult]:
    """Per system, its fastest complete round (else its first round)."""
    chosen: list[ControllerResult] = []
    for position, first in enumerate(rounds[0]):
        runs = [r[position] for r in rounds]
        complete = [r for r in runs if r.complete]
        chosen.append(max(complete, key=lambda r: r.works_per_second) if complete else first)
    return chosen


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.controller", description=__doc__)
    parser.add_argument("--works", type=int, default=1000, help="Works per system (1000)")
    parser.add_argument("--quick", action="store_true", help="100 Works: proves it runs")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="our reconcile workers (4, the default)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the controllers on the fake's event loop (default: each in its own process)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of each controller process to DIR/<system>.prof",
    )
    parser.add_argument(
        "--status-delay",
        type=float,
        default=1.0,
        help="our longest wait to write a running Work's progress (1.0, the default; 0: at once)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {','.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="create Works at this many per second (default 0: all at once, a drain)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every system; the best is compared"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per system")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick and "--works" not in (argv if argv is not None else sys.argv):
        args.works = 100
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.profile is not None:
        if args.in_process:
            parser.error("--profile profiles the controller processes: not with --in-process")
        args.profile.mkdir(parents=True, exist_ok=True)
    unknown = set(args.systems) - set(SYSTEMS)
    if (
        unknown
        or args.works < 1
        or args.concurrency < 1
        or args.repeat < 1
        or args.status_delay < 0
    ):
        parser.error(
            f"unknown systems {sorted(unknown)}"
            if unknown
            else "--works, --concurrency and --repeat ≥ 1, --status-delay ≥ 0"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # A watch the client closes at shutdown makes aiohttp log the fake's failed write.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    rounds = asyncio.run(run(args))
    results = best(rounds)
    env = {"machine": machine(), "versions": versions()}
    print("## Machine\n")
    for key, value in env["machine"].items():
        print(f"- {key}: {value}")
    print("- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    arrival = f"created at {args.rate:g}/s" if args.rate else "created at once"
    print(f"\n## Controller: {args.works} job Works ({arrival}) to Succeeded on the fake\n")
    if args.repeat > 1:
        for number, round_ in enumerate(rounds, 1):
            print(f"Round {number}:\n\n{table(round_)}\n")
        print(f"Best of {args.repeat} per system:\n")
    print(table(results))
    print("\nSteady-state requests per Work:\n")
    print(breakdown(results))
    found = ratios(results)
    if args.rate:  # paced: every system keeps up with the arrivals, so rates compare nothing
        found = {k: v for k, v in found.items() if "throughput" not in k and "floor" not in k}
    print("\nRatios and targets:\n")
    for key, value in found.items():
        print(f"- {key}: {value:.2f}" if isinstance(value, float) else f"- {key}: {value}")
    for r in (r for round_ in rounds for r in round_):
        if r.error:
            print(f"\n{r.system} FAILED: {r.error}")
    if args.output:
        payload = {
            **env,
            "works": args.works,
            "concurrency": args.concurrency,
            "status_delay": args.status_delay,
            "in_process": args.in_process,
            "rate": args.rate,
            "repeat": args.repeat,
            "results": [r.to_json() for r in results],
            "rounds": [[r.to_json() for r in round_] for round_ in rounds],
            "ratios": found,
        }
        args.output.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if all(r.complete for round_ in rounds for r in round_) else 1


if __name__ == "__main__":
    raise SystemExit(main())

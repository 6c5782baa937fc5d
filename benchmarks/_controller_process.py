"""A controller under test in a process of its own, as it runs against a real cluster.

``python -m benchmarks._controller_process SYSTEM --kubeconfig F --url U [--concurrency C]
[--status-delay D]`` runs ``ours`` (the ``WorkController``) or ``kopf`` (the anchor)
against the API server at ``U`` until SIGTERM, prints ``ready`` on its own line once the
controller watches, and at the end ``cpu S``: the CPU seconds the process spent from
ready to stop (``time.process_time``), the controller's own cost. ``spawned`` is the
benchmark's side: a runner that starts this process, waits for ``ready`` and stops it
with SIGTERM.

A real API server never shares the controller's CPU; with the fake in the controller's
event loop, the fake's own cost (validation, watch fan-out, the simulated Job
controller) is counted against every system and squeezes their differences.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._kube import FakeKube


class SpawnedRunner:
    """A runner that runs ``system`` in a child process against the fake's address;
    ``cpu_seconds`` is what the last run's process reported (None if it did not)."""

    def __init__(self, system: str, options: Sequence[str]) -> None:
        self.system = system
        self.options = tuple(options)
        self.cpu_seconds: float | None = None

    async def __call__(
        self, fake: FakeKube, kubeconfig: Path, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        self.cpu_seconds = None
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._controller_process",
            self.system,
            "--kubeconfig",
            str(kubeconfig),
            "--url",
            fake.url,
            *self.options,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None
        try:
            while (line := await child.stdout.readline()).strip() != b"ready":
                if not line:
                    raise RuntimeError(f"the {self.system} process ended before it was ready")
            ready.set()
            await stop.wait()
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
            try:
                rest = await asyncio.wait_for(child.stdout.read(), 20)
                await asyncio.wait_for(child.wait(), 20)
            except TimeoutError:
                child.kill()
                await child.wait()
                rest = b""
        for line in rest.splitlines():
            if line.startswith(b"cpu "):
                self.cpu_seconds = float(line.split()[1])


def spawned(system: str, *options: str) -> SpawnedRunner:
    """A runner that runs ``system`` in a child process against the fake's address."""
    return SpawnedRunner(system, options)


async def run_ours(
    kubeconfig: Path,
    concurrency: int,
    status_delay: float,
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """Our ``WorkController`` with the ``job`` work type and a real kubernetes-asyncio
    client against the kubeconfig's server, until ``stop``; ``ready`` once it watches."""
    import anyio

    from workqueue_core.work.registry import WorkTypes
    from workqueue_kubernetes import load_configuration, open_cluster_client
    from workqueue_kubernetes.controller import ControllerOptions, WorkController
    from workqueue_kubernetes.job import JobWorkType

    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        options = ControllerOptions(
            namespace="default", concurrency=concurrency, status_delay=status_delay
        )
        controller = WorkController(client, WorkTypes([JobWorkType()]), options)
        async with anyio.create_task_group() as tg:
            await tg.start(controller.run)
            ready.set()
            await stop.wait()
            tg.cancel_scope.cancel()


async def _main(args: argparse.Namespace) -> None:
    ready, stop = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if args.system == "ours":
        task = asyncio.create_task(
            run_ours(args.kubeconfig, args.concurrency, args.status_delay, ready, stop)
        )
    else:
        from benchmarks.anchor_kopf import run_kopf_at

        task = asyncio.create_task(run_kopf_at(args.url, args.kubeconfig, ready, stop))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():
        print("ready", flush=True)
    started = time.process_time()
    # kopf takes SIGTERM over with handlers of its own: its end is the stop too.
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    print(f"cpu {time.process_time() - started:.3f}", flush=True)
    stopping.cancel()
    await task


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._controller_process")
    parser.add_argument("system", choices=("ours", "kopf"))
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--status-delay", type=float, default=1.0)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the run here")
    args = parser.parse_args(argv)
    if args.profile is None:
        asyncio.run(_main(args))
        return 0
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(_main(args))
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The controller benchmark's harness: a fresh fake API server, the Works, the clock and
the request accounting.

``tests/`` is put on ``sys.path`` to import the fake (``support.kube``). Works are created
in the fake's store directly (no HTTP), so the fake's request log holds only what the
controller under test sent. ``Probe`` records a monotonic timestamp when the fake stores
a Job's ``Complete`` condition and when it stores a Work's terminal phase; both are taken
inside the fake's ``write_object``, which every write goes through (HTTP PUT and PATCH,
and the simulated Job controller).
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.kube import FakeKube, RequestRecord  # noqa: E402
from support.kube.resources import NAMESPACES  # noqa: E402
from support.kube.works import job_work  # noqa: E402

NAMESPACE = "default"
TERMINAL = ("Succeeded", "Failed")
WRITES = ("create", "update", "patch", "delete")
READS = ("get", "list")


@attrs.define
class Probe:
    """Monotonic times of Job completions and Work terminal statuses, keyed by Work name."""

    job_complete: dict[str, float] = attrs.field(factory=dict)
    work_terminal: dict[str, float] = attrs.field(factory=dict)
    phases: dict[str, str] = attrs.field(factory=dict)
    done: asyncio.Event = attrs.field(factory=asyncio.Event)
    expected: int = 0

    def install(self, fake: FakeKube) -> None:
        """Wrap ``fake.write_object`` (an instance attribute: the class is unchanged)."""
        write = fake.write_object

        def observed(*args: Any, **kwargs: Any) -> dict[str, Any]:
            stored = write(*args, **kwargs)
            self._saw(stored)
            return stored

        fake.write_object = observed  # type: ignore[method-assign]

    def _saw(self, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        kind = obj.get("kind")
        status = obj.get("status") or {}
        metadata = obj.get("metadata") or {}
        if kind == "Job":
            complete = any(
                c.get("type") == "Complete" and c.get("status") == "True"
                for c in status.get("conditions") or ()
            )
            owner = next(
                (r["name"] for r in metadata.get("ownerReferences") or () if r.get("controller")),
                None,
            )
            if complete and owner is not None:
                self.job_complete.setdefault(owner, now)
        elif kind == "Work" and status.get("phase") in TERMINAL:
            name = metadata["name"]
            if name not in self.work_terminal:
                self.work_terminal[name] = now
                self.phases[name] = status["phase"]
                if len(self.work_terminal) >= self.expected:
                    self.done.set()


def work_names(count: int) -> list[str]:
    """``w-00000`` … (instance 0's Job is ``w-00000-0``)."""
    return [f"w-{i:05d}" for i in range(count)]


async def create_works(fake: FakeKube, names: Sequence[str], rate: float = 0.0) -> float:
    """Create the Works in the fake's store (each a real ADDED watch event); returns the
    monotonic time of the first create. ``rate`` 0: all at once (yielding to the loop
    every 50 Works); else ``rate`` Works per second, evenly spaced."""
    works = fake.resource("works")
    started = time.monotonic()
    for i, name in enumerate(names):
        fake.create_object(works, NAMESPACE, job_work(name))
        if rate > 0:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        elif i % 50 == 49:
            await asyncio.sleep(0)
    return started


@attrs.frozen
class RequestCounts:
    """The fake's request log in the steady state (after the first Work was created)."""

    by_verb: dict[str, int]
    by_resource: dict[str, int]
    startup: int
    discovery: int
    errors: int
    watches: int
    """Watch requests over the whole run (opened at startup, or re-opened later)."""

    @classmethod
    def of(cls, requests: Sequence[RequestRecord], startup: int) -> RequestCounts:
        steady = requests[startup:]
        return cls(
            by_verb=dict(Counter(r.verb or "other" for r in steady)),
            by_resource=dict(
                Counter(
                    f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}"
                    for r in steady
                    if r.verb is not None
                )
            ),
            startup=startup,
            discovery=sum(1 for r in requests if r.verb is None),
            errors=sum(1 for r in steady if r.status >= 400),
            watches=sum(1 for r in requests if r.verb == "watch"),
        )

    def count(self, verbs: Sequence[str]) -> int:
        return sum(self.by_verb.get(v, 0) for v in verbs)


@attrs.frozen
class ControllerResult:
    """One system's run: throughput, requests per Work, completion→terminal latency."""

    system: str
    works: int
    succeeded: int
    seconds: float
    latencies: tuple[float, ...]
    requests: RequestCounts | None
    settings: str = ""
    error: str | None = None
    stored_succeeded: int = 0
    """Works whose stored status is Succeeded when the run ended (read from the fake)."""
    jobs: int = 0
    """Jobs in the fake when the run ended (one per Work is right)."""
    cpu_seconds: float | None = None
    """CPU the controller's own process spent from ready to stop (None in-process)."""
    server_cpu_seconds: float = 0.0
    """CPU the benchmark's process (the fake API server, and an in-process system) spent
    from the first Work created to the last one terminal."""

    @property
    def cpu_ms_per_work(self) -> float | None:
        if self.cpu_seconds is None or not self.works:
            return None
        return self.cpu_seconds * 1000 / self.works

    @property
    def works_per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    def per_work(self, verbs: Sequence[str]) -> float:
        if self.requests is None or not self.works:
            return 0.0
        return self.requests.count(verbs) / self.works

    @property
    def complete(self) -> bool:
        return self.error is None and self.succeeded == self.stored_succeeded == self.works

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the completion→terminal latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "works": self.works,
            "succeeded": self.succeeded,
            "stored_succeeded": self.stored_succeeded,
            "jobs": self.jobs,
            "seconds": self.seconds,
            "works_per_second": self.works_per_second,
            "cpu_ms_per_work": self.cpu_ms_per_work,
            "server_cpu_ms_per_work": self.server_cpu_seconds * 1000 / self.works,
            "writes_per_work": self.per_work(WRITES),
            "reads_per_work": self.per_work(READS),
            "watches": self.requests.watches if self.requests else None,
            "requests_by_verb": self.requests.by_verb if self.requests else None,
            "requests_by_resource": self.requests.by_resource if self.requests else None,
            "startup_requests": self.requests.startup if self.requests else None,
            "discovery_requests": self.requests.discovery if self.requests else None,
            "error_answers": self.requests.errors if self.requests else None,
            "latency_p50_ms": self.percentile(50) * 1000,
            "latency_p99_ms": self.percentile(99) * 1000,
            "settings": self.settings,
            "error": self.error,
        }


Runner = Callable[[FakeKube, Path, asyncio.Event, asyncio.Event], Awaitable[None]]
"""Runs a controller against the fake (kubeconfig given) until the stop event; sets the
ready event once it watches."""


async def measure(
    system: str,
    runner: Runner,
    count: int,
    workdir: Path,
    *,
    settings: str = "",
    timeout: float = 600.0,
    rate: float = 0.0,
) -> ControllerResult:
    """Run ``runner`` on a fresh fake server, create ``count`` Works, wait until all are
    terminal (or ``timeout``), and account for it."""
    names = work_names(count)
    probe = Probe(expected=count)
    async with FakeKube() as fake:
        if fake.get("namespaces", None, NAMESPACE) is None:  # kopf looks its namespace up
            fake.create_object(NAMESPACES, None, {"metadata": {"name": NAMESPACE}})
        probe.install(fake)
        kubeconfig = fake.write_kubeconfig(workdir / f"kubeconfig-{system}")
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(runner(fake, kubeconfig, ready, stop))
        error: str | None = None
        try:
            await asyncio.wait_for(_ready_or_failed(ready, task), 60)
            await asyncio.sleep(0.5)  # let the initial lists and watches settle
            startup = len(fake.requests)
            cpu_before = time.process_time()
            first = await create_works(fake, names, rate)
            try:
                await asyncio.wait_for(_ready_or_failed(probe.done, task), timeout)
            except TimeoutError:
                error = f"{count - len(probe.work_terminal)} Works not terminal after {timeout}s"
            server_cpu = time.process_time() - cpu_before
            last = max(probe.work_terminal.values(), default=first)
            requests = RequestCounts.of(list(fake.requests), startup)
            stored_succeeded = sum(
                1
                for w in fake.objects("works", NAMESPACE)
                if (w.get("status") or {}).get("phase") == "Succeeded"
            )
            jobs = len(fake.objects("jobs", NAMESPACE))
        except Exception as exc:  # the system could not run: report it, not a traceback
            return ControllerResult(system, count, 0, 0.0, (), None, settings, repr(exc))
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 30)
            except Exception as exc:  # a failed shutdown is reported, not fatal
                error = error or f"shutdown: {exc!r}"
    latencies = tuple(
        probe.work_terminal[n] - probe.job_complete[n]
        for n in names
        if n in probe.work_terminal and n in probe.job_complete
    )
    succeeded = sum(1 for n in names if probe.phases.get(n) == "Succeeded")
    return ControllerResult(
        system,
        count,
        succeeded,
        last - first,
        latencies,
        requests,
        settings,
        error,
        stored_succeeded,
        jobs,
        server_cpu_seconds=server_cpu,
    )


async def _ready_or_failed(flag: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait for ``flag``; raise if the runner task ends first."""
    waiter = asyncio.create_task(flag.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        waiter.cancel()
        if task.exception() is not None:
            raise RuntimeError(f"the controller stopped: {task.exception()!r}")
        raise RuntimeError("the controller stopped before it was ready")


async def run_floor(
    fake: FakeKube, kubeconfig: Path, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """The harness's own cost: no controller, no HTTP. Each new Work's Job is created in
    the fake's store at once, and each Job's ``Complete`` is copied into its Work's status
    there, through the same ``create_object``/``write_object`` (validation, versions,
    the simulated Job controller) the systems' requests reach."""
    loop = asyncio.get_running_loop()
    works, jobs = fake.resource("works"), fake.resource("jobs", "batch")
    create, write = fake.create_object, fake.write_object

    def create_job(work: dict[str, Any]) -> None:
        metadata = work["metadata"]
        job = copy.deepcopy(work["spec"]["template"])
        job["metadata"] = {
            "name": f"{metadata['name']}-0",
            "annotations": job["metadata"].get("annotations", {}),
            "ownerReferences": [
                {
                    "apiVersion": work["apiVersion"],
                    "kind": "Work",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        job["spec"]["backoffLimit"] = 0
        create(jobs, metadata["namespace"], job)

    def finish(job: dict[str, Any]) -> None:
        owner = job["metadata"]["ownerReferences"][0]["name"]
        work = fake.get("works", job["metadata"]["namespace"], owner)
        if work is not None:
            work["status"] = {
                "phase": "Succeeded",
                "completionTime": job["status"]["completionTime"],
            }
            write(works, job["metadata"]["namespace"], owner, work, subresource="status")

    def created(resource: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        stored = create(resource, *args, **kwargs)
        if resource is works:
            loop.call_soon(create_job, stored)
        return stored

    def written(resource: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        stored = write(resource, *args, **kwargs)
        conditions = (stored.get("status") or {}).get("conditions") or ()
        if resource is jobs and any(c["type"] == "Complete" for c in conditions):
            loop.call_soon(finish, stored)
        return stored

    fake.create_object = created  # type: ignore[method-assign]
    fake.write_object = written  # type: ignore[method-assign]
    ready.set()
    await stop.wait()

"""HTTP claim+complete cycles per second through a real broker process.

``python -m benchmarks.http_cycles [--store sqlite|postgresql|both] [--items N]
[--clients 8] [--batch B] [--rounds R] [--brokers N] [--quick]``

For each store a broker is started as its own process (``python -m workqueue_cli
broker``: real uvicorn on a free loopback port) on a fresh database: a temporary
SQLite file, or a temporary schema on PostgreSQL (dropped afterwards). Then, in
this process:

1. ``--clients`` agents are registered; each client keeps its own agent token
   and one ``BrokerClient`` (one keep-alive ``httpx.AsyncClient``).
2. Each round (``--rounds``, on the same broker and database, with a work type of
   its own): first ``--items`` no-op items are submitted to the *store* directly
   (``submit_many`` of 500, up to ``--submitters`` calls in flight, on the same
   database, timed: the anchor of the HTTP batch submit), then claimed and
   completed through the store (untimed) so the round's queue holds only its own
   work; then ``--items`` no-op items are submitted by the admin with
   ``POST /work/batch`` (timed, reported against the store's rate), up to
   ``--submitters`` requests in flight.
3. Timed: every client loops ``claim_next(limit=B)`` → ``complete_many`` of the
   whole claimed batch (one request) until a claim comes back empty.
4. The execution log must hold exactly the round's ids, each SUCCEEDED once, and
   none of them may be left in the queue.

A *cycle* is one item claimed and completed: cycles/s = items / drain seconds.
With ``--brokers N`` (PostgreSQL only) N broker processes serve one database and
the clients are spread over them round-robin (client i talks to broker i mod N).
Claim latency is the client-side duration of each non-empty ``claim_next`` call
(request, broker, store, response decoding). The clients run on plain asyncio
(no uvloop) in this process; on a 2-core machine they, the broker and PostgreSQL
compete for the CPU, so the report splits the drain's CPU seconds between the
broker process, this process, the broker's PostgreSQL backends (found by
``application_name``) and the rest of the machine (other users of the box).
``--py-spy DIR`` samples the broker with py-spy during each drain (py-spy must be
installed) into collapsed-stack files, one per store and round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import attrs
import httpx
import psycopg

from benchmarks._env import machine, versions
from benchmarks._stats import percentile, rate
from workqueue_broker.ids import uuid7
from workqueue_broker.stores import open_store, parse_database_url
from workqueue_core.domain.errors import WorkqueueError
from workqueue_core.domain.models import (
    Completion,
    SubmitRequest,
    SubmitResult,
    Targeting,
    WorkItem,
)
from workqueue_core.ports import BatchSubmitStore
from workqueue_http.client import BrokerClient

DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"
STORES = ("sqlite", "postgresql")
WORK_TYPE = "bench-noop"
START_TIMEOUT = 60.0
FULL_ITEMS = 10_000
FULL_ROUNDS = 3
QUICK_ITEMS = 2_000
TICKS = os.sysconf("SC_CLK_TCK")
SUBMIT_BATCH = 500
"""Items per prefill request."""


@attrs.frozen
class Options:
    """One run's settings."""

    stores: tuple[str, ...]
    items: int
    clients: int
    batch: int
    submitters: int
    rounds: int
    brokers: int
    dsn: str
    log_level: str
    py_spy: Path | None
    keep: bool


@attrs.frozen
class ClientStats:
    """What one agent client did during the drain."""

    claim_seconds: list[float]
    complete_seconds: list[float]
    claimed: int
    completed: int
    errors: int
    finished_at: float


@attrs.frozen
class CycleResult:
    """One store's drain: throughput, latencies, CPU and the log check."""

    store: str
    round: int
    items: int
    clients: int
    batch: int
    brokers: int
    submit_seconds: float
    store_submit_seconds: float
    drain_seconds: float
    claim_p50_ms: float
    claim_p99_ms: float
    complete_p50_ms: float
    complete_p99_ms: float
    claim_requests: int
    mean_claimed: float
    errors: int
    broker_cpu_seconds: float
    client_cpu_seconds: float
    postgres_cpu_seconds: float | None
    machine_cpu_seconds: float
    machine_busy: float
    verified: bool
    problem: str | None = None

    @property
    def cycles_per_second(self) -> float:
        """Items claimed and completed per second of drain."""
        return rate(self.items, self.drain_seconds) if self.verified else float("nan")

    @property
    def submit_ratio(self) -> float:
        """HTTP batch submit rate over the store's own ``submit_many`` rate."""
        return self.store_submit_seconds / self.submit_seconds


# --- the broker process --------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Broker:
    """A running broker process and how to reach it."""

    url: str
    admin_token: str = attrs.field(repr=False)
    process: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the broker process so far."""
        return process_cpu(self.process.pid)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the broker was not ready in {START_TIMEOUT}s")


@contextmanager
def running_broker(
    database_url: str, workdir: Path, log_level: str, token: str | None = None
) -> Iterator[Broker]:
    """``python -m workqueue_cli broker`` on a free port; SIGTERM on exit."""
    port = free_port()
    token = token or "wqadmin_bench_" + secrets.token_urlsafe(24)
    env = dict(os.environ)
    env.update(
        {
            "WORKQUEUE_HOST": "127.0.0.1",
            "WORKQUEUE_PORT": str(port),
            "WORKQUEUE_DATABASE_URL": database_url,
            "WORKQUEUE_ADMIN_TOKENS": token,
            "WORKQUEUE_LOG_FORMAT": "json",
            "WORKQUEUE_LOG_LEVEL": log_level,
            "WORKQUEUE_SHUTDOWN_TIMEOUT": "2s",
        }
    )
    log_path = workdir / f"broker-{port}.log"
    log: IO[bytes] = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "workqueue_cli", "broker"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield Broker(url, token, process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@contextmanager
def database_url(store: str, workdir: Path, dsn: str, keep: bool) -> Iterator[str]:
    """A fresh database for ``store``: a SQLite file, or a PostgreSQL schema dropped after."""
    if store == "sqlite":
        yield f"sqlite:///{workdir / 'workqueue.db'}"
        return
    schema = f"wq_http_bench_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in dsn else "?"
    try:
        # application_name (passed on to libpq) finds the broker's backends for their CPU time
        yield f"{dsn}{separator}schema={schema}&application_name={schema}"
    finally:
        if not keep:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- CPU accounting --------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone or unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def backend_pids(dsn: str, application_name: str) -> set[int]:
    """The PostgreSQL backends (same machine) of the broker's connections."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return {int(row[0]) for row in rows}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the load --------------------------------------------------------------------------


async def register_agents(broker: Broker, count: int) -> list[tuple[uuid.UUID, str]]:
    """``count`` agents: their ids and tokens."""
    async with BrokerClient(broker.url, broker.admin_token) as admin:
        issued = [
            await admin.register_agent(f"bench-agent-{i}", labels={"pool": "bench"})
            for i in range(count)
        ]
    return [(i.agent.id, i.token) for i in issued]


async def store_submit(
    database_url: str, work_type: str, items: int, submitters: int, agent_id: uuid.UUID
) -> float:
    """Seconds the store's own ``submit_many`` takes for ``items`` items (batches of
    ``SUBMIT_BATCH``, ``submitters`` calls in flight) on the broker's database; the
    items are then claimed and completed through the store, untimed."""
    async with open_store(parse_database_url(database_url), migrate=False) as opened:
        store = opened.store
        if not isinstance(store, BatchSubmitStore):
            raise RuntimeError(f"{type(store).__name__} has no submit_many")
        now = datetime.now(UTC)
        ids = [uuid7() for _ in range(items)]  # as the broker makes them
        batches = iter(
            [
                WorkItem(
                    id=i,
                    work_type=work_type,
                    spec="{}",
                    targeting=Targeting.labels("pool=bench"),
                    created_at=now,
                    claim_timeout=timedelta(minutes=10),
                    correlation_id=str(i),
                )
                for i in ids[first : first + SUBMIT_BATCH]
            ]
            for first in range(0, items, SUBMIT_BATCH)
        )

        async def submitter() -> None:
            for batch in batches:
                await store.submit_many(batch, "admin", now)

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(submitters)))
        seconds = time.perf_counter() - started
        while got := await store.claim_next(agent_id, now, [work_type], 1000):
            await store.complete_many_quiet([Completion(i.token, agent_id) for i in got], now)
    return seconds


async def prefill(
    broker: Broker, work_type: str, items: int, submitters: int
) -> tuple[set[uuid.UUID], float]:
    """Submit ``items`` no-op items in batches of ``SUBMIT_BATCH`` (``POST /work/batch``)
    with up to ``submitters`` requests in flight; ids and seconds."""
    request = SubmitRequest(
        work_type=work_type,
        spec="{}",
        targeting=Targeting.labels("pool=bench"),
        claim_timeout=timedelta(minutes=10),
    )
    ids: set[uuid.UUID] = set()
    remaining = iter(range(0, items, SUBMIT_BATCH))
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=submitters, max_keepalive_connections=submitters)
    transport = httpx.AsyncHTTPTransport(limits=limits)
    async with BrokerClient(broker.url, broker.admin_token, transport=transport) as admin:

        async def submitter() -> None:
            for first in remaining:
                size = min(SUBMIT_BATCH, items - first)
                for result in await admin.submit_many([request] * size):
                    if not isinstance(result, SubmitResult):
                        raise RuntimeError(f"the broker refused a prefill item: {result}")
                    ids.add(result.item.id)

        await asyncio.gather(*(submitter() for _ in range(submitters)))
    return ids, time.perf_counter() - started


async def agent_loop(
    url: str, agent_id: uuid.UUID, token: str, work_type: str, batch: int, start: asyncio.Event
) -> ClientStats:
    """Claim up to ``batch``, complete them in one request, until a claim comes back empty."""
    claim_seconds: list[float] = []
    complete_seconds: list[float] = []
    claimed = completed = errors = 0
    async with BrokerClient(url, token, retries=0) as client:
        await client.agent_heartbeat(agent_id)  # opens the keep-alive connection
        await start.wait()
        while True:
            began = time.perf_counter()
            items = await client.claim_next(agent_id, [work_type], limit=batch)
            claimed_at = time.perf_counter()
            if not items:
                break
            claim_seconds.append(claimed_at - began)
            claimed += len(items)
            outcomes = await client.complete_many(
                [Completion(item.token, agent_id, None) for item in items]
            )
            complete_seconds.append(time.perf_counter() - claimed_at)
            for outcome in outcomes:
                if isinstance(outcome, WorkqueueError):
                    errors += 1
                else:
                    completed += 1
    return ClientStats(
        claim_seconds, complete_seconds, claimed, completed, errors, time.perf_counter()
    )


async def verify(broker: Broker, work_type: str, submitted: set[uuid.UUID]) -> str | None:
    """None when the log holds exactly ``submitted``, each SUCCEEDED once, and nothing is queued."""
    seen: list[str] = []
    headers = {"Authorization": f"Bearer {broker.admin_token}"}
    async with httpx.AsyncClient(base_url=f"{broker.url}/api/v1", headers=headers) as http:
        params: dict[str, Any] = {"work_type": work_type, "limit": 1000}
        while True:
            page = (await http.get("/work-log", params=params)).raise_for_status().json()
            for record in page["records"]:
                item = record["item"]
                if item["status"] != "SUCCEEDED":
                    return f"record {item['id']} is {item['status']}"
                seen.append(item["id"])
            if page["next_cursor"] is None:
                break
            params["after"] = page["next_cursor"]
        queued = await http.get("/work", params={"work_type": work_type, "limit": 10})
        queued = queued.raise_for_status().json()
    if queued["items"]:
        return f"{len(queued['items'])}+ items still queued"
    if len(seen) != len(set(seen)):
        return f"{len(seen) - len(set(seen))} duplicate log records"
    found = {uuid.UUID(i) for i in seen}
    if found != submitted:
        return f"log has {len(found)} ids, {len(found & submitted)} of {len(submitted)} submitted"
    return None


@contextmanager
def py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """Sample ``pid`` with py-spy (collapsed stacks to ``output``) while the block runs."""
    if output is None:
        yield
        return
    executable = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [executable, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    recorder = subprocess.Popen(
        [*command, "--nonblocking", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        _, err = recorder.communicate(timeout=60)
        if recorder.returncode not in (0, -signal.SIGINT):
            print(f"py-spy: {err.decode(errors='replace')[-500:]}", file=sys.stderr)


async def run_store(store: str, options: Options) -> list[CycleResult]:
    """Start the brokers on a fresh ``store`` database; prefill, drain and verify each round."""
    with tempfile.TemporaryDirectory(prefix=f"wq-http-bench-{store}-") as tmp:
        workdir = Path(tmp)
        token = "wqadmin_bench_" + secrets.token_urlsafe(24)
        with (
            database_url(store, workdir, options.dsn, options.keep) as url,
            ExitStack() as stack,
        ):
            brokers = [
                stack.enter_context(running_broker(url, workdir, options.log_level, token))
                for _ in range(options.brokers)
            ]
            agents = await register_agents(brokers[0], options.clients)
            app_name = url.rsplit("application_name=", 1)[-1] if store == "postgresql" else None
            results = []
            for round_ in range(1, options.rounds + 1):
                profile = None
                if options.py_spy is not None:
                    profile = options.py_spy / f"broker-{store}-round{round_}.txt"
                store_seconds = await store_submit(
                    url,
                    f"{WORK_TYPE}-store-{round_}",
                    options.items,
                    options.submitters,
                    agents[0][0],
                )
                results.append(
                    await run_round(
                        brokers, agents, store, round_, options, app_name, profile, store_seconds
                    )
                )
            return results


async def run_round(
    brokers: Sequence[Broker],
    agents: Sequence[tuple[uuid.UUID, str]],
    store: str,
    round_: int,
    options: Options,
    app_name: str | None,
    profile: Path | None,
    store_submit_seconds: float,
) -> CycleResult:
    """Prefill (timed apart), drain (timed) and verify one round of its own work type."""
    broker = brokers[0]
    work_type = f"{WORK_TYPE}-{round_}"
    submitted, submit_seconds = await prefill(broker, work_type, options.items, options.submitters)
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(
            agent_loop(
                brokers[n % len(brokers)].url, agent_id, token, work_type, options.batch, start
            )
        )
        for n, (agent_id, token) in enumerate(agents)
    ]
    await asyncio.sleep(0.5)  # every client connected and waiting
    backends = backend_pids(options.dsn, app_name) if app_name else set()
    backend_cpu = {pid: process_cpu(pid) for pid in backends}
    with py_spy(broker.process.pid, profile):
        broker_cpu = sum(b.cpu_seconds() for b in brokers)
        client_cpu = _client_cpu()
        busy, total = _machine_ticks()
        began = time.perf_counter()
        start.set()
        stats = await asyncio.gather(*tasks)
        ended = max(s.finished_at for s in stats)
        busy_after, total_after = _machine_ticks()
        broker_cpu = sum(b.cpu_seconds() for b in brokers) - broker_cpu
        client_cpu = _client_cpu() - client_cpu
        if app_name:
            backends |= backend_pids(options.dsn, app_name)
        postgres_cpu = sum(process_cpu(p) - backend_cpu.get(p, 0.0) for p in backends)
    problem = await verify(broker, work_type, submitted)
    claims = [s for c in stats for s in c.claim_seconds]
    completes = [s for c in stats for s in c.complete_seconds]
    errors = sum(c.errors for c in stats)
    if problem is None and errors:
        problem = f"{errors} completions refused"
    return CycleResult(
        store=store,
        round=round_,
        items=options.items,
        clients=options.clients,
        batch=options.batch,
        brokers=len(brokers),
        submit_seconds=submit_seconds,
        store_submit_seconds=store_submit_seconds,
        drain_seconds=ended - began,
        claim_p50_ms=percentile(claims, 50) * 1000,
        claim_p99_ms=percentile(claims, 99) * 1000,
        complete_p50_ms=percentile(completes, 50) * 1000,
        complete_p99_ms=percentile(completes, 99) * 1000,
        claim_requests=len(claims),
        mean_claimed=sum(c.claimed for c in stats) / len(claims) if claims else 0.0,
        errors=errors,
        broker_cpu_seconds=broker_cpu,
        client_cpu_seconds=client_cpu,
        postgres_cpu_seconds=postgres_cpu if app_name else None,
        machine_cpu_seconds=(busy_after - busy) / TICKS,
        machine_busy=(busy_after - busy) / max(1, total_after - total),
        verified=problem is None,
        problem=problem,
    )


# --- report ----------------------------------------------------------------------------


def markdown(results: Sequence[CycleResult]) -> str:
    """The results as Markdown: one row per round, the CPU split, and a summary per store."""
    lines = [
        "| store | brokers | round | items | clients | batch | drain s | cycles/s | claim p50 ms "
        "| claim p99 ms | complete p50 ms | complete p99 ms | items/claim | verified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        verified = "yes" if r.verified else f"NO: {r.problem}"
        lines.append(
            f"| {r.store} | {r.brokers} | {r.round} | {r.items:,} | {r.clients} | {r.batch} "
            f"| {r.drain_seconds:.2f} | {r.cycles_per_second:,.0f} | {r.claim_p50_ms:.1f} "
            f"| {r.claim_p99_ms:.1f} | {r.complete_p50_ms:.1f} | {r.complete_p99_ms:.1f} "
            f"| {r.mean_claimed:.1f} | {verified} |"
        )
    lines += [
        "",
        "CPU seconds during each drain (machine: both cores, every process, other users too):",
        "",
        "| store | round | broker(s) | clients | PostgreSQL backends "
        "| rest of machine | machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        pg = r.postgres_cpu_seconds or 0.0
        rest = r.machine_cpu_seconds - r.broker_cpu_seconds - r.client_cpu_seconds - pg
        lines.append(
            f"| {r.store} | {r.round} "
            f"| {r.broker_cpu_seconds:.2f} | {r.client_cpu_seconds:.2f} "
            f"| {'-' if r.postgres_cpu_seconds is None else f'{pg:.2f}'} | {max(rest, 0.0):.2f} "
            f"| {r.machine_busy:.0%} |"
        )
    lines += [
        "",
        "Batch submit: `POST /work/batch` against the store's own `submit_many`, same "
        "database, same round (target: HTTP ≥ 0.5 × store):",
        "",
        "| store | round | store submit_many items/s | HTTP batch items/s | HTTP / store |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.store} | {r.round} | {rate(r.items, r.store_submit_seconds):,.0f} "
            f"| {rate(r.items, r.submit_seconds):,.0f} | {r.submit_ratio:.2f} |"
        )
    lines += [
        "",
        "| store | rounds | median cycles/s | best cycles/s | median HTTP / store submit |",
        "|---|---:|---:|---:|---:|",
    ]
    medians: dict[str, float] = {}
    for store in dict.fromkeys(r.store for r in results):
        rates = [r.cycles_per_second for r in results if r.store == store]
        ratios = [r.submit_ratio for r in results if r.store == store]
        medians[store] = statistics.median(rates)
        lines.append(
            f"| {store} | {len(rates)} | {medians[store]:,.0f} | {max(rates):,.0f} "
            f"| {statistics.median(ratios):.2f} |"
        )
    if len(medians) == 2:
        ratio = medians["sqlite"] / medians["postgresql"]
        lines += ["", f"SQLite / PostgreSQL (median cycles/s): {ratio:.2f} (target ≥ 0.6)"]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.http_cycles",
        description="HTTP claim+complete cycles/s through a real broker process.",
    )
    parser.add_argument("--store", choices=(*STORES, "both"), default="both")
    parser.add_argument(
        "--items", type=int, help=f"items per round ({FULL_ITEMS:,}; quick {QUICK_ITEMS:,})"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent agent clients (8)")
    parser.add_argument("--batch", type=int, default=100, help="claim limit per request (100)")
    parser.add_argument(
        "--rounds", type=int, help=f"prefill+drain rounds per store ({FULL_ROUNDS}; quick 1)"
    )
    parser.add_argument(
        "--submitters", type=int, default=16, help="prefill requests in flight (16)"
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="broker processes on the one database, clients spread over them (1; >1: PostgreSQL)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ITEMS:,} items, 1 round: a smoke run"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("WORKQUEUE_BENCH_PG", DEFAULT_DSN),
        help="PostgreSQL server (a temporary schema is created there and dropped)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the broker's log level (info: one line per request, as deployed)",
    )
    parser.add_argument(
        "--py-spy", type=Path, help="sample the broker into DIR/broker-STORE-roundR.txt"
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the PostgreSQL schema")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.items is None:
        args.items = QUICK_ITEMS if args.quick else FULL_ITEMS
    if args.rounds is None:
        args.rounds = 1 if args.quick else FULL_ROUNDS
    for name in ("items", "clients", "submitters", "rounds", "brokers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.brokers > 1 and args.store != "postgresql":
        parser.error("--brokers above 1 needs --store postgresql (one SQLite file, one broker)")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be in 1..1000 (the API's claim limit)")
    return args


async def run(options: Options) -> list[CycleResult]:
    """Every requested store, one after the other."""
    return [result for store in options.stores for result in await run_store(store, options)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the report; exit status 1 when a store's log check failed."""
    args = _parse(argv)
    options = Options(
        stores=STORES if args.store == "both" else (args.store,),
        items=args.items,
        clients=args.clients,
        batch=args.batch,
        submitters=args.submitters,
        rounds=args.rounds,
        brokers=args.brokers,
        dsn=args.dsn,
        log_level=args.log_level,
        py_spy=args.py_spy,
        keep=args.keep_db,
    )
    env = machine()
    print(
        f"machine: {env['cpu']}, {env['cores']} cores, {env['memory']}, "
        f"load {env['load_average']} at start; Python {env['python']}"
    )
    results = asyncio.run(run(options))
    print()
    print(markdown(results))
    if args.output is not None:
        report = {
            "machine": env,
            "versions": versions(),
            "results": [
                attrs.asdict(r) | {"cycles_per_second": r.cycles_per_second} for r in results
            ],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r.verified for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A worker process: runs ``thumbnail`` work from the shared store until SIGTERM or SIGINT.

Run (after ``python examples/web_service.py`` in another terminal, or alone):

    python examples/worker.py [--concurrency 8] [--grace 30] [--name thumbnailer-1]

The store is ``WORKQUEUE_DATABASE_URL`` (default ``sqlite:///workqueue-example.db``;
see ``examples/worker_setup.py``). The first SIGTERM/SIGINT stops claiming and gives
running handlers ``--grace`` seconds; what is still running then is released (back
to the queue, not charged to its budget) so another worker takes it; a second signal
stops at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket

import anyio
from worker_setup import THUMBNAIL, open_broker

from workqueue_agent.signals import run_until_signalled
from workqueue_core.executor.worker import (
    Job,
    PermanentError,
    RetryableError,
    Worker,
    WorkerOptions,
)


async def make_thumbnail(job: Job) -> str:
    """Simulated work: wait ``seconds``, then name the thumbnail that was made."""
    try:
        spec = json.loads(job.spec)
        image = str(spec["image"])
        seconds = float(spec.get("seconds", 0.1))
    except (ValueError, KeyError, TypeError) as error:
        raise PermanentError("InvalidSpec", f"{type(error).__name__}: {error}") from error
    if not 0 <= seconds <= 600:
        raise PermanentError("InvalidSpec", "seconds must be in 0..600")
    if image.startswith("unreachable:"):
        raise RetryableError("SourceUnreachable", image)
    await anyio.sleep(seconds)
    return json.dumps({"thumbnail": f"{image}.thumb.png", "attempt": job.attempt})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=f"thumbnailer-{socket.gethostname()}-{os.getpid()}")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grace", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per attempt, seconds")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    options = WorkerOptions(
        concurrency=args.concurrency,
        batch=args.batch,
        grace_period=args.grace,
        default_timeout=args.timeout,
        claim_wait=1.0,
    )
    async with open_broker() as broker:
        worker = Worker(broker, name=args.name, labels={"role": "thumbnails"}, options=options)
        worker.register(THUMBNAIL, make_thumbnail)
        async with anyio.create_task_group() as tg:
            agent_id = await tg.start(run_until_signalled, worker)
            print(f"worker {args.name} ready as agent {agent_id}", flush=True)
        stats = worker.stats
        print(
            f"worker {args.name} stopped: {stats.succeeded} succeeded, "
            f"{stats.retried} retried, {stats.failed} failed, {stats.released} released",
            flush=True,
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    anyio.run(main, parse_args())

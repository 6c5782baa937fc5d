"""Quickstart: a broker service on the in-memory store, one agent, one item, its timeline.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import anyio

from workqueue_core.domain.models import Failure, SubmitRequest, Targeting
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.service.broker import BrokerService
from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.specs import spec_validator
from workqueue_memory import MemoryStore
from workqueue_shipwright import BuildWorkType

BUILD = """\
apiVersion: brokkr.io/v1alpha1
kind: Work
metadata:
  name: build-my-app
spec:
  workType: build
  template:
    apiVersion: shipwright.io/v1beta1
    kind: Build
    metadata:
      name: my-app
    spec:
      source:
        type: Git
        git:
          url: https://github.com/org/repo
          revision: main
      strategy:
        name: buildah
        kind: ClusterBuildStrategy
      output:
        image: registry.example.com/my-app:latest
        pushSecret: registry-credentials
"""


class SystemClock:
    """The wall clock; the core never reads it itself."""

    def now(self) -> datetime:
        return datetime.now(UTC)


async def main() -> None:
    store = MemoryStore(random_source=random.Random().random)
    broker = BrokerService(
        store,
        SystemClock(),
        uuid.uuid4,
        lambda: secrets.token_urlsafe(32),
        notifier=store.notifier,
        # "build" specs must be Work resources whose Shipwright Build passes the real CRD
        spec_validator=spec_validator(WorkTypes([BuildWorkType()])),
    )
    agent = (await broker.register_agent("builder-1", labels={"gpu": "true", "zone": "a"})).agent
    submitted = await broker.submit(
        SubmitRequest(
            work_type="build",
            spec=BUILD,
            targeting=Targeting.labels("gpu=true,zone in (a,b)"),
            retry_policy=RetryPolicy(max_retries=2, base_delay=timedelta(0)),
            idempotency_key="build-my-app-1",
        )
    )
    work_id = submitted.item.id
    [claimed] = await broker.claim_next(agent.id, ["build"])
    await broker.fail(claimed.token, agent.id, Failure.retryable("GitRemoteFailed", "timeout"))
    [again] = await broker.claim_next(agent.id, ["build"])
    record = await broker.complete(again.token, agent.id, result="sha256:4f1c")
    print(f"{work_id} {record.status.value} after {record.item.executions} runs: {record.result}")
    for event in await broker.events(work_id):
        source = event.from_status.value if event.from_status else "-"
        target = event.to_status.value
        print(f"  {event.seq:>2} {source:>9} -> {target:<9} {event.actor:<45} {event.detail}")


if __name__ == "__main__":
    anyio.run(main)

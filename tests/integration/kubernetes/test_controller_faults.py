"""The Work controller under API faults: every Work still ends in the right phase, and no
retry index ever gets a second Job.

Faults from the fake API server: a 409 storm on status writes, watches dropped every few
events, watch expiry (410) forcing re-lists, the server down for 10 s, and 500s.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from support.kube import FakeKube
from support.kube.works import job_work

from .test_controller import NS, create, jobs_of, running_controller, terminal

pytestmark = pytest.mark.anyio

MIX = (
    ("ok-{i}", ("Complete",), "Succeeded", 0),
    ("flaky-{i}", ("Failed", "Complete"), "Succeeded", 1),
    ("perm-{i}", ("Failed:PodFailurePolicy",), "Failed", 0),
    ("doomed-{i}", ("Failed",), "Failed", 2),
)


async def submit_mix(client: object, copies: int) -> dict[str, tuple[str, int]]:
    expected: dict[str, tuple[str, int]] = {}
    for i in range(copies):
        for pattern, outcomes, phase, retries in MIX:
            name = pattern.format(i=i)
            await create(client, job_work(name, *outcomes, max_retries=2))  # type: ignore[arg-type]
            expected[name] = (phase, retries)
    return expected


async def check_outcomes(fake: FakeKube, expected: dict[str, tuple[str, int]]) -> None:
    for name, (phase, retries) in expected.items():
        work = await terminal(fake, name, seconds=60)
        assert (work["status"]["phase"], work["status"]["retries"]) == (phase, retries), name
        indexes = [j["metadata"]["labels"]["workqueue.dev/instance"] for j in jobs_of(fake, work)]
        assert indexes == [str(n) for n in range(retries + 1)], name
    stored = sum(
        1 for r in fake.requests if r.verb == "create" and r.resource == "jobs" and r.status == 201
    )
    runs = sum(retries + 1 for _, retries in expected.values())
    assert stored == runs, "more Jobs were created than runs were due"


async def test_a_409_storm_on_status_writes(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (controller, client):
        fake_kube.conflict_status_writes(40)
        expected = await submit_mix(client, 2)
        await check_outcomes(fake_kube, expected)
    assert controller.stats.conflicts >= 40


async def test_watches_dropped_every_few_events(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (controller, client):
        fake_kube.drop_watches_after(3)
        expected = await submit_mix(client, 2)
        await check_outcomes(fake_kube, expected)
        fake_kube.drop_watches_after(None)
    assert all(informer.watch_count > 3 for informer in controller.informers)


async def test_expired_watches_force_a_relist(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (controller, client):
        expected = await submit_mix(client, 1)
        for _ in range(5):
            await anyio.sleep(0.05)
            fake_kube.expire_watches()
        await check_outcomes(fake_kube, expected)
    assert all(informer.list_count >= 2 for informer in controller.informers)


async def test_the_api_server_down_for_ten_seconds(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (_, client):
        expected = await submit_mix(client, 1)
        outage = fake_kube.down_for(10)
        # Works created while the server is down are not lost either: they wait for it.
        await outage
        expected |= await submit_mix_later(client)
        await check_outcomes(fake_kube, expected)


async def submit_mix_later(client: object) -> dict[str, tuple[str, int]]:
    expected: dict[str, tuple[str, int]] = {}
    for pattern, outcomes, phase, retries in MIX:
        name = pattern.format(i="after")
        await create(client, job_work(name, *outcomes, max_retries=2))  # type: ignore[arg-type]
        expected[name] = (phase, retries)
    return expected


async def test_server_errors_are_retried(fake_kube: FakeKube, kubeconfig: Path) -> None:
    async with running_controller(kubeconfig) as (controller, client):
        expected = await submit_mix(client, 1)
        fake_kube.fail_next(20, 500, verb="create")
        fake_kube.fail_next(10, 500, verb="update")
        await check_outcomes(fake_kube, expected)
    assert controller.stats.errors >= 1
    assert NS == "default"

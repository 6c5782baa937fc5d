"""What the Work controller writes: its own writes read back from the cache, and
progress statuses held for ``status_delay`` (on the fake API server, real HTTP).

The request counts come from the fake's request log: creates of Jobs, updates of the
Works' status subresource, and the 409 answers among them.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from support.kube import FakeKube
from support.kube.works import job_work

from .test_controller import NS, condition, create, jobs_of, running_controller, terminal

pytestmark = pytest.mark.anyio


def status_writes(fake: FakeKube) -> int:
    return fake.count("update", "works", subresource="status")


def conflicts(fake: FakeKube) -> int:
    return sum(1 for r in fake.requests if r.resource == "works" and r.status == 409)


async def test_a_job_that_ends_within_the_delay_costs_one_status_write(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig, status_delay=30) as (controller, client):
        await create(client, job_work("quick", delay=0.5))
        work = await terminal(fake_kube, "quick")
    assert work["status"]["phase"] == "Succeeded"
    # The held Running status was replaced by the terminal one: still a full record.
    assert work["status"]["startTime"] and work["status"]["completionTime"]
    assert condition(work, "TemplateApplied")["status"] == "True"
    assert len(jobs_of(fake_kube, work)) == 1
    assert fake_kube.count("create", "jobs") == 1
    assert status_writes(fake_kube) == 1
    assert controller.stats.status_writes_held >= 1
    assert conflicts(fake_kube) == 0


async def test_a_long_job_shows_running_once_the_delay_has_passed(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig, status_delay=0.2) as (_, client):
        await create(client, job_work("slow", delay=3))
        with anyio.fail_after(10):
            while True:
                work = fake_kube.get("works", NS, "slow")
                if (work or {}).get("status", {}).get("phase") == "Running":
                    break
                await anyio.sleep(0.02)
        [job] = jobs_of(fake_kube, work)
        assert not any(c["type"] == "Complete" for c in job.get("status", {}).get("conditions", []))
        assert condition(work, "TemplateApplied")["status"] == "True"
        work = await terminal(fake_kube, "slow")
    assert work["status"]["phase"] == "Succeeded"
    assert status_writes(fake_kube) == 2
    assert conflicts(fake_kube) == 0


async def test_status_delay_zero_writes_every_status_at_once(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with running_controller(kubeconfig, status_delay=0) as (controller, client):
        await create(client, job_work("eager", delay=0.5))
        work = await terminal(fake_kube, "eager")
    assert work["status"]["phase"] == "Succeeded"
    # Running with the create (instance pending), Running once the Job has started,
    # then Succeeded: the same Job under a long delay costs one write (above).
    assert status_writes(fake_kube) == 3
    assert controller.stats.status_writes_held == 0
    assert conflicts(fake_kube) == 0


async def test_many_workers_read_their_own_writes_without_conflicts(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    names = [f"w{i}" for i in range(60)]
    async with running_controller(kubeconfig, concurrency=16, status_delay=0) as (
        controller,
        client,
    ):
        for name in names:
            await create(client, job_work(name, "Failed", "Complete", max_retries=1))
        works = [await terminal(fake_kube, name, 60) for name in names]
    assert {w["status"]["phase"] for w in works} == {"Succeeded"}
    assert {w["status"]["retries"] for w in works} == {1}
    # Every Work: two Jobs, and its status written once per decision that changed it.
    assert fake_kube.count("create", "jobs") == 2 * len(names)
    assert conflicts(fake_kube) == 0
    assert controller.stats.conflicts == 0

"""``workqueue agent --kubernetes``: a real broker process, a real agent process, the fake API
server (with its simulated Job controller) and the real kubernetes-asyncio client.

Each test registers its own agent and targets its items at it. The item's spec is a ``job``
Work whose Jobs end as their ``fake.workqueue.dev/outcomes`` annotation says. The agent
creates one Work per claim, its in-process controller runs the Jobs, the agent reports the
Work's outcome and local retries to the broker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import anyio
import attrs
import pytest
import yaml
from broker_support import AgentProcess, BrokerProcess, broker_on, cli_command

from support.kube import DEFAULT_RESOURCES, FakeKube, serve_shipwright
from support.kube.fixtures import fake_kube, kubeconfig
from support.kube.works import build_work, job_work
from workqueue_core.domain.models import (
    ExecutionRecord,
    FailureClass,
    SubmitRequest,
    Targeting,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.claim_work import (
    AGENT_ID_LABEL,
    CLAIM_TOKEN_ANNOTATION,
    CORRELATION_ID_ANNOTATION,
    WORK_ID_LABEL,
    work_name,
)
from workqueue_http.client import BrokerClient

__all__ = ["fake_kube", "kubeconfig"]

pytestmark = pytest.mark.anyio

BOUND = 60.0
NS = "default"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    workdir: Path = tmp_path_factory.mktemp("kube-agent")
    with broker_on("sqlite", workdir, {"WORKQUEUE_SWEEP_INTERVAL": "200ms"}) as process:
        yield process


@pytest.fixture
async def admin(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, broker.admin_token) as client:
        yield client


@attrs.define
class KubeAgent(AgentProcess):
    """A ``workqueue agent --kubernetes`` process (restartable; SIGTERM to stop)."""

    ENV: ClassVar[dict[str, str]] = {"WORKQUEUE_HEARTBEAT_INTERVAL": "300ms"}
    STOP: ClassVar[signal.Signals] = signal.SIGTERM

    kubeconfig: Path = attrs.field(kw_only=True)

    def command(self) -> list[str]:
        return [
            *cli_command(),
            "agent",
            "--kubernetes",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            NS,
            *self.args,
        ]


@pytest.fixture
async def new_agent(
    admin: BrokerClient, broker: BrokerProcess, kubeconfig: Path, tmp_path: Path
) -> AsyncIterator[Any]:
    made: list[KubeAgent] = []

    async def make(*args: str) -> KubeAgent:
        issued = await admin.register_agent(f"kube-{len(made)}-{tmp_path.name}")
        agent = KubeAgent(
            broker, issued.agent.id, issued.token, tmp_path, list(args), kubeconfig=kubeconfig
        )
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


async def submit(
    admin: BrokerClient,
    agent: KubeAgent,
    *outcomes: str,
    max_retries: int = 3,
    delay: float | None = None,
    correlation_id: str | None = None,
) -> UUID:
    work = job_work("submitted", *outcomes, delay=delay, retry_policy=None)
    request = SubmitRequest(
        work_type="job",
        spec=yaml.safe_dump(work),
        targeting=Targeting.agents(agent.agent_id),
        retry_policy=RetryPolicy(
            max_retries=max_retries,
            base_delay=timedelta(seconds=0.05),
            multiplier=1.0,
            max_delay=timedelta(seconds=0.05),
        ),
        correlation_id=correlation_id,
    )
    return (await admin.submit(request)).item.id


async def ended(admin: BrokerClient, work_id: UUID, agent: KubeAgent) -> ExecutionRecord:
    """The item's log record, once there (failing with the agent's log otherwise)."""
    with anyio.fail_after(BOUND):
        while True:
            state = await admin.get(work_id)
            if isinstance(state, ExecutionRecord):
                return state
            assert agent.process is None or agent.process.poll() is None, agent.log_text()
            await anyio.sleep(0.05)


async def until(condition: Any, agent: KubeAgent) -> None:
    with anyio.fail_after(BOUND):
        while not condition():
            assert agent.process is None or agent.process.poll() is None, agent.log_text()
            await anyio.sleep(0.02)


def works_of(fake: FakeKube, work_id: UUID) -> list[dict[str, Any]]:
    return [
        w
        for w in fake.objects("works", NS)
        if w["metadata"].get("labels", {}).get(WORK_ID_LABEL) == str(work_id)
    ]


def jobs_of(fake: FakeKube, work: dict[str, Any]) -> list[dict[str, Any]]:
    uid = work["metadata"]["uid"]
    return [
        j
        for j in fake.objects("jobs", NS)
        if any(r.get("uid") == uid for r in j["metadata"].get("ownerReferences") or ())
    ]


def created(fake: FakeKube, resource: str) -> int:
    return sum(
        1
        for r in fake.requests
        if r.verb == "create" and r.resource == resource and r.status == 201
    )


# --- outcomes ---------------------------------------------------------------------------


async def test_a_job_item_succeeds_through_agent_work_and_job(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "Complete", correlation_id="corr-1")
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.SUCCEEDED, agent.log_text()
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 1, 0)
    [work] = works_of(fake_kube, work_id)
    metadata = work["metadata"]
    assert metadata["name"] == work_name(work_id, 1)
    assert metadata["labels"][AGENT_ID_LABEL] == str(agent.agent_id)
    assert metadata["annotations"][CLAIM_TOKEN_ANNOTATION] == f"{work_id}/1"
    assert metadata["annotations"][CORRELATION_ID_ANNOTATION] == "corr-1"
    assert work["spec"]["maxRetries"] == 3  # the whole remaining budget
    assert work["status"]["phase"] == "Succeeded"
    assert len(jobs_of(fake_kube, work)) == 1


async def test_local_retries_are_charged_to_the_one_budget(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "Failed", "Failed", "Complete")
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.SUCCEEDED, agent.log_text()
    # one claim, three runs: two local retries charged
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 3, 2)
    [work] = works_of(fake_kube, work_id)
    assert work["status"]["retries"] == 2
    assert len(jobs_of(fake_kube, work)) == 3


async def test_heartbeats_charge_local_retries_while_the_work_runs(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "Failed", "Failed", "never")
    seen: list[Any] = []

    async def charged() -> bool:
        item = await admin.get(work_id)
        seen.append(item)
        return not isinstance(item, ExecutionRecord) and item.local_retries == 2

    with anyio.fail_after(BOUND):
        while not await charged():
            assert agent.process is not None and agent.process.poll() is None, agent.log_text()
            await anyio.sleep(0.05)
    item = seen[-1]
    # still running its third Job, and the broker already charged the two retries
    assert (item.status, item.attempt, item.executions) == (WorkStatus.CLAIMED, 1, 3)
    [work] = works_of(fake_kube, work_id)
    assert work["status"]["phase"] == "Running"
    await admin.cancel(work_id)
    await until(lambda: not works_of(fake_kube, work_id), agent)


async def test_with_no_local_retries_every_retry_goes_back_to_the_broker(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent("--local-retries", "0")
    agent.start()
    work_id = await submit(admin, agent, "Failed", max_retries=2)
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.FAILED, agent.log_text()
    assert record.item.last_error is not None
    assert record.item.last_error.failure_class is FailureClass.RETRYABLE
    assert record.item.last_error.reason == "BackoffLimitExceeded"
    # three claims, three runs, each claim its own Work with no local retry
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (3, 3, 0)
    works = sorted(works_of(fake_kube, work_id), key=lambda w: w["metadata"]["name"])
    assert [w["metadata"]["name"] for w in works] == [work_name(work_id, n) for n in (1, 2, 3)]
    assert [w["spec"]["maxRetries"] for w in works] == [0, 0, 0]


async def test_a_local_retry_limit_below_the_budget_splits_the_runs(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent("--local-retries", "1")
    agent.start()
    work_id = await submit(admin, agent, "Failed", max_retries=3)
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.FAILED, agent.log_text()
    # claim 1: two runs (maxRetries 1); claim 2: the two runs the budget has left
    assert (record.item.attempt, record.item.executions) == (2, 4)
    works = sorted(works_of(fake_kube, work_id), key=lambda w: w["metadata"]["name"])
    assert [w["spec"]["maxRetries"] for w in works] == [1, 1]
    assert [w["status"]["retries"] for w in works] == [1, 1]


async def test_a_permanent_failure_is_not_retried(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "Failed:PodFailurePolicy")
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.FAILED, agent.log_text()
    assert record.item.last_error is not None
    assert record.item.last_error.failure_class is FailureClass.PERMANENT
    assert record.item.last_error.reason == "PodFailurePolicy"
    assert (record.item.attempt, record.item.executions) == (1, 1)
    [work] = works_of(fake_kube, work_id)
    assert work["status"]["retries"] == 0
    assert len(jobs_of(fake_kube, work)) == 1


async def test_a_cancel_in_the_broker_deletes_the_work_and_its_job(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "never")
    await until(lambda: any(jobs_of(fake_kube, w) for w in works_of(fake_kube, work_id)), agent)
    await admin.cancel(work_id)
    await until(lambda: not works_of(fake_kube, work_id), agent)
    await until(lambda: not fake_kube.objects("jobs", NS), agent)  # the GC took the Job
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.CANCELED
    deletes = [r for r in fake_kube.requests if r.verb == "delete" and r.resource == "works"]
    assert len(deletes) == 1


# --- restart ----------------------------------------------------------------------------


async def test_an_agent_killed_mid_flight_resumes_its_work_and_reports_once(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "Failed", "Complete", delay=1.0)
    await until(lambda: any(jobs_of(fake_kube, w) for w in works_of(fake_kube, work_id)), agent)
    agent.kill()
    [work] = works_of(fake_kube, work_id)
    assert work.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    assert not isinstance(await admin.get(work_id), ExecutionRecord)
    agent.start()
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.SUCCEEDED, agent.log_text()
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 2, 1)
    assert created(fake_kube, "works") == 1  # the restarted agent adopted the Work
    [work] = works_of(fake_kube, work_id)
    assert len(jobs_of(fake_kube, work)) == 2
    events = await admin.events(work_id)
    assert [e.to_status for e in events].count(WorkStatus.SUCCEEDED) == 1
    claims = [e for e in events if e.from_status is WorkStatus.PENDING]
    assert [e.to_status for e in claims] == [WorkStatus.CLAIMED]


async def test_a_restarted_agent_deletes_the_works_of_claims_it_lost(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()
    agent.start()
    work_id = await submit(admin, agent, "never")
    await until(lambda: bool(works_of(fake_kube, work_id)), agent)
    agent.kill()
    await admin.cancel(work_id)  # the claim is gone while the agent is down
    assert works_of(fake_kube, work_id), "the Work must outlive the killed agent"
    agent.start()
    await until(lambda: not works_of(fake_kube, work_id), agent)
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.CANCELED


async def test_a_restarted_agent_deletes_a_work_whose_item_the_broker_no_longer_knows(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    """A Work left behind for an item the broker has forgotten (its log record pruned after
    the retention period while the agent was down): GET answers 404, the claim is not
    held, the Work is deleted, and the agent runs on."""
    agent = await new_agent()
    gone = UUID("0190f2b0-0000-7000-8000-000000000001")
    work = job_work(work_name(gone, 1), "never")
    work["metadata"]["labels"] = {WORK_ID_LABEL: str(gone), AGENT_ID_LABEL: str(agent.agent_id)}
    work["metadata"]["annotations"][CLAIM_TOKEN_ANNOTATION] = f"{gone}/1"
    fake_kube.create_object(fake_kube.resource("works"), NS, work)
    agent.start()
    await until(lambda: not works_of(fake_kube, gone), agent)
    work_id = await submit(admin, agent, "Complete")
    record = await ended(admin, work_id, agent)
    assert record.item.status is WorkStatus.SUCCEEDED, agent.log_text()


async def test_a_stopped_agent_releases_its_claim_and_deletes_the_work(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent("--grace-period", "0.2s")
    agent.start()
    work_id = await submit(admin, agent, "never")
    await until(lambda: any(jobs_of(fake_kube, w) for w in works_of(fake_kube, work_id)), agent)
    assert agent.process is not None
    agent.process.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(lambda: agent.process.wait(BOUND)) == 0
    assert not works_of(fake_kube, work_id)
    item = await admin.get(work_id)
    assert not isinstance(item, ExecutionRecord)
    # released: PENDING again, the interrupted run not charged (the attempt may be 2: a
    # claim long-poll still in flight when the worker stops can take the released item
    # back, and the stopping worker releases it at once)
    assert (item.status, item.executions) == (WorkStatus.PENDING, 0)
    assert not fake_kube.objects("works", NS)


async def test_a_missing_kubeconfig_is_one_line_and_a_non_zero_exit(
    admin: BrokerClient, new_agent: Any, tmp_path: Path
) -> None:
    agent = await new_agent()
    agent.kubeconfig = tmp_path / "missing-kubeconfig"
    agent.start()
    assert agent.process is not None
    status = await anyio.to_thread.run_sync(lambda: agent.process.wait(BOUND))
    assert status == 2, agent.log_text()
    assert "missing-kubeconfig" in agent.log_text()
    assert "Traceback" not in agent.log_text()


async def test_a_cluster_without_the_work_crd_is_one_line_and_a_non_zero_exit(
    admin: BrokerClient, new_agent: Any, tmp_path: Path
) -> None:
    async with FakeKube(resources=DEFAULT_RESOURCES) as bare:  # no works.brokkr.io
        agent = await new_agent()
        agent.kubeconfig = bare.write_kubeconfig(tmp_path / "bare-kubeconfig")
        agent.start()
        assert agent.process is not None
        status = await anyio.to_thread.run_sync(lambda: agent.process.wait(BOUND))
    assert status == 2, agent.log_text()
    assert "deploy/crds/work.yaml" in agent.log_text()
    assert "Traceback" not in agent.log_text()


async def test_without_the_in_process_controller_a_workqueue_controller_runs_the_works(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    agent = await new_agent("--no-controller")
    agent.start()
    work_id = await submit(admin, agent, "Failed", "Complete")
    await until(lambda: bool(works_of(fake_kube, work_id)), agent)
    assert not fake_kube.objects("jobs", NS), "no controller should have run the Work yet"
    log = tmp_path / "controller.log"
    command = [
        sys.executable,
        "-m",
        "workqueue_controller",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        NS,
        "--no-leader-elect",
        "--health-port",
        "0",
    ]
    with log.open("ab") as out:
        controller = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        record = await ended(admin, work_id, agent)
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(15)
    assert record.item.status is WorkStatus.SUCCEEDED, agent.log_text() + log.read_text()
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 2, 1)
    assert "controller synced" not in agent.log_text()  # the agent ran no controller
    assert "controller synced" in log.read_text()


async def test_a_build_item_runs_as_a_buildrun_when_the_cluster_serves_shipwright(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    serve_shipwright(fake_kube)
    agent = await new_agent()  # default work types: build and job, both served now
    agent.start()
    spec = build_work("submitted", "Failed:PodEvicted", "Succeeded", retry_policy=None)
    request = SubmitRequest(
        work_type="build",
        spec=yaml.safe_dump(spec),
        targeting=Targeting.agents(agent.agent_id),
        retry_policy=RetryPolicy(
            max_retries=3,
            base_delay=timedelta(seconds=0.05),
            multiplier=1.0,
            max_delay=timedelta(seconds=0.05),
        ),
    )
    work_id = (await admin.submit(request)).item.id
    record = await ended(admin, work_id, agent)
    assert record.status is WorkStatus.SUCCEEDED, agent.log_text()
    assert (record.item.attempt, record.item.executions, record.item.local_retries) == (1, 2, 1)
    assert record.result is not None
    assert json.loads(record.result)["digest"].startswith("sha256:")
    [work] = works_of(fake_kube, work_id)
    runs = [
        r
        for r in fake_kube.objects("buildruns", NS)
        if r["metadata"]["labels"].get("workqueue.dev/work-uid") == work["metadata"]["uid"]
    ]
    assert len(runs) == 2


async def test_without_shipwright_the_agent_claims_no_build_work(
    admin: BrokerClient, new_agent: Any, fake_kube: FakeKube
) -> None:
    agent = await new_agent()  # the fake serves no Shipwright kinds
    agent.start()
    spec = build_work("submitted", "Succeeded", retry_policy=None)
    build_id = (
        await admin.submit(
            SubmitRequest(
                work_type="build",
                spec=yaml.safe_dump(spec),
                targeting=Targeting.agents(agent.agent_id),
            )
        )
    ).item.id
    job_id = await submit(admin, agent, "Complete")  # submitted after the build
    record = await ended(admin, job_id, agent)
    assert record.status is WorkStatus.SUCCEEDED, agent.log_text()
    build = await admin.get(build_id)
    assert not isinstance(build, ExecutionRecord)
    assert (build.status, build.attempt) == (WorkStatus.PENDING, 0)

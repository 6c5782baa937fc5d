"""``workqueue controller`` as real processes against the fake API server.

The controller is killed with SIGKILL mid-flight and restarted: every Work still ends in
its phase with one Job per retry index. Two replicas elect a leader on a Lease: only the
leader writes; when it is killed the other takes over and finishes the work.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from integration.kubernetes.test_controller import NS, create, jobs_of, terminal
from support.kube import FakeKube
from support.kube.fixtures import fake_kube, kubeconfig
from support.kube.works import job_work
from workqueue_kubernetes import load_configuration, open_cluster_client

__all__ = ["fake_kube", "kubeconfig"]

pytestmark = pytest.mark.anyio


@contextmanager
def controller_process(
    kubeconfig: Path, identity: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "workqueue_controller",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        NS,
        "--identity",
        identity,
        "--lease-duration",
        "2s",
        "--renew-deadline",
        "1.5s",
        "--retry-period",
        "0.2s",
        "--health-port",
        "0",
        "--log-format",
        "json",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def holder(fake: FakeKube) -> str | None:
    lease = fake.get("leases", NS, "workqueue-controller")
    return None if lease is None else lease["spec"].get("holderIdentity") or None


async def test_a_controller_killed_mid_flight_is_restarted_and_finishes(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        names = [f"w{i}" for i in range(12)]
        for i, name in enumerate(names):
            outcomes = ("Failed", "Complete") if i % 2 else ("Complete",)
            await create(client, job_work(name, *outcomes, delay=0.3, max_retries=2))
        log = tmp_path / "controller.log"
        with controller_process(kubeconfig, "first", log) as first:
            with anyio.fail_after(30):
                while len(fake_kube.objects("jobs", NS)) < 4:  # mid-flight: some Jobs made
                    await anyio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        assert any(
            (w.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            for w in fake_kube.objects("works", NS)
        ), "everything finished before the kill: the test proves nothing"
        with controller_process(kubeconfig, "second", log):
            for i, name in enumerate(names):
                work = await terminal(fake_kube, name, seconds=60)
                assert work["status"]["phase"] == "Succeeded", name
                assert work["status"]["retries"] == i % 2, name
                jobs = jobs_of(fake_kube, work)
                indexes = [j["metadata"]["labels"]["workqueue.dev/instance"] for j in jobs]
                assert indexes == [str(n) for n in range(i % 2 + 1)], name
    created = sum(
        1
        for r in fake_kube.requests
        if r.verb == "create" and r.resource == "jobs" and r.status == 201
    )
    assert created == len(names) + len(names) // 2


def reconciling(log: Path) -> bool:
    """Whether the process logging to ``log`` has started reconciling (it leads)."""
    return log.exists() and '"reconciling"' in log.read_text()


async def test_two_replicas_elect_one_leader_and_hand_over_when_it_dies(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        logs = {name: tmp_path / f"{name}.log" for name in ("replica-a", "replica-b")}
        with (
            controller_process(kubeconfig, "replica-a", logs["replica-a"]) as a,
            controller_process(kubeconfig, "replica-b", logs["replica-b"]) as b,
        ):
            with anyio.fail_after(30):
                while holder(fake_kube) is None:
                    await anyio.sleep(0.05)
            leader_name = holder(fake_kube)
            assert leader_name in logs
            follower_name = next(n for n in logs if n != leader_name)
            await create(client, job_work("before", "Complete"))
            assert (await terminal(fake_kube, "before"))["status"]["phase"] == "Succeeded"
            await anyio.sleep(1)  # several renewals: the follower must still stand by
            assert holder(fake_kube) == leader_name
            assert reconciling(logs[leader_name])
            assert not reconciling(logs[follower_name]), "two replicas reconciled at once"
            leader, follower = (a, b) if leader_name == "replica-a" else (b, a)
            leader.send_signal(signal.SIGKILL)
            leader.wait(timeout=10)
            await create(client, job_work("after", "Failed", "Complete"))
            work = await terminal(fake_kube, "after", seconds=60)
            assert work["status"]["phase"] == "Succeeded"
            assert work["status"]["retries"] == 1
            assert follower.poll() is None
            assert holder(fake_kube) == follower_name
            assert reconciling(logs[follower_name])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_readiness_and_metrics(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    import httpx

    port = free_port()
    command = [
        sys.executable, "-m", "workqueue_controller", "--kubeconfig", str(kubeconfig),
        "--namespace", NS, "--no-leader-elect", "--health-port", str(port),
    ]  # fmt: skip
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    with (tmp_path / "controller.log").open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        async with open_cluster_client(configuration) as client, httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{port}"
            with anyio.fail_after(30):
                while True:
                    try:
                        ready = await http.get(f"{base}/readyz")
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
                        continue
                    if ready.status_code == 200:
                        break
                    assert ready.status_code == 503
                    await anyio.sleep(0.05)
            assert (await http.get(f"{base}/healthz")).status_code == 200
            await create(client, job_work("measured", "Failed", "Complete"))
            await terminal(fake_kube, "measured")
            metrics = (await http.get(f"{base}/metrics")).text
            assert (await http.get(f"{base}/nothing")).status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0, "SIGTERM is a clean stop"
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values["workqueue_controller_instances_created_total"] == 2
    assert values['workqueue_controller_outcomes_total{phase="Succeeded"}'] == 1
    assert values['workqueue_controller_works{phase="Succeeded"}'] == 1
    assert values["workqueue_controller_reconciles_total"] >= 3
    assert values["workqueue_controller_leader"] == 1
    assert "workqueue_controller_queue_depth" in values


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lease-duration", "2s", "--renew-deadline", "5s"], "renew_deadline < lease_duration"),
        (["--concurrency", "0"], "--concurrency: must be in 1..256"),
        (["--health-port", "http"], "--health-port: expected an integer"),
    ],
)
def test_bad_settings_are_one_line_errors(flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workqueue_controller", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.startswith("workqueue controller: error:")
    assert "Traceback" not in done.stderr

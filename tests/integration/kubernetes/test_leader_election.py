"""Leader election on a Lease, with real clients against the fake API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from support.kube import FakeKube
from workqueue_kubernetes import KubernetesClusterClient, load_configuration, open_cluster_client
from workqueue_kubernetes.leader import LeaderElection, LeaderElector

pytestmark = pytest.mark.anyio

FAST = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


@asynccontextmanager
async def client_for(kubeconfig: Path) -> AsyncIterator[KubernetesClusterClient]:
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as client:
        yield client


def election(identity: str) -> LeaderElection:
    return LeaderElection(name="wq-controller", namespace="default", identity=identity, **FAST)


async def test_one_of_two_candidates_leads_and_the_other_takes_over_when_it_stops(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    leading: list[str] = []
    stop_first = anyio.Event()
    stopped = anyio.Event()

    def work(identity: str) -> object:
        async def lead() -> None:
            leading.append(identity)
            if identity == "a":
                await stop_first.wait()
                raise _Stop
            await anyio.sleep_forever()

        return lead

    async with client_for(kubeconfig) as one, client_for(kubeconfig) as two:
        first = LeaderElector(one, election("a"))
        second = LeaderElector(two, election("b"))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def run_first() -> None:
                    try:
                        await first.run(work("a"))  # type: ignore[arg-type]
                    except* _Stop:
                        stopped.set()

                tg.start_soon(run_first)
                while not leading:
                    await anyio.sleep(0.02)
                tg.start_soon(second.run, work("b"))
                await anyio.sleep(1.5)  # a follower must not take a lease being renewed
                assert leading == ["a"]
                assert first.is_leader and not second.is_leader
                lease = fake_kube.get("leases", "default", "wq-controller")
                assert lease is not None and lease["spec"]["holderIdentity"] == "a"
                stop_first.set()  # the leader's work fails: it releases the lease
                while len(leading) < 2:
                    await anyio.sleep(0.02)
                assert leading == ["a", "b"]
                assert stopped.is_set()
                lease = fake_kube.get("leases", "default", "wq-controller")
                assert lease is not None and lease["spec"]["holderIdentity"] == "b"
                assert lease["spec"]["leaseTransitions"] >= 1
                tg.cancel_scope.cancel()


async def test_a_leader_that_cannot_renew_stops_leading_before_another_takes_over(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    cancelled = anyio.Event()

    async def lead() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with client_for(kubeconfig) as client:
        elector = LeaderElector(client, election("a"))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(elector.run, lead)
                while not elector.is_leader:
                    await anyio.sleep(0.02)
                await fake_kube.go_down()
                await cancelled.wait()  # stopped leading while the API was unreachable
                assert not elector.is_leader
                await fake_kube.come_up()
                while not elector.is_leader:  # and leads again once it can renew
                    await anyio.sleep(0.02)
                assert elector.transitions == 2
                tg.cancel_scope.cancel()


async def test_a_lease_held_by_someone_alive_is_never_taken(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    async with client_for(kubeconfig) as one, client_for(kubeconfig) as two:
        holder = LeaderElector(one, election("a"))
        rival = LeaderElector(two, election("b"))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.run, anyio.sleep_forever)
                while not holder.is_leader:
                    await anyio.sleep(0.02)
                tg.start_soon(rival.run, anyio.sleep_forever)
                for _ in range(30):  # three lease durations of renewals
                    await anyio.sleep(0.1)
                    assert holder.is_leader and not rival.is_leader
                tg.cancel_scope.cancel()


def test_the_timing_must_let_a_leader_stop_before_its_lease_expires() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElection(name="x", namespace="d", identity="a", lease_duration=5, renew_deadline=5)


class _Stop(Exception):
    pass

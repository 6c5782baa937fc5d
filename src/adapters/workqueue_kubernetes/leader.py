"""Leader election on a ``coordination.k8s.io/v1`` Lease, so replicas never reconcile at once.

The algorithm is client-go's ``leaderelection``: a candidate reads the Lease; it takes it
when there is none, when it is its own, or when the holder has not renewed it for
``lease_duration`` seconds *as observed by this candidate* (the time is measured on the
local monotonic clock from the moment the candidate last saw the Lease change, so clocks
that disagree between nodes do not matter). Every write carries the Lease's
``resourceVersion``: of two candidates writing at once, one gets ``Conflict`` and stays a
follower. The leader renews every ``retry_period``; when it cannot renew for
``renew_deadline`` it stops leading at once (its work is cancelled) before another
replica can take over (``renew_deadline < lease_duration``). On a graceful stop the
leader releases the Lease so a successor need not wait out the duration.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs

from workqueue_kubernetes.port import (
    LEASES,
    AlreadyExists,
    ClusterClient,
    ClusterError,
    Conflict,
    NotFound,
)

__all__ = ["LeaderElection", "LeaderElector"]

log = logging.getLogger("workqueue.leader")


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class LeaderElection:
    """Which Lease, who we are, and the timing (client-go's defaults: 15 s, 10 s, 2 s)."""

    name: str
    namespace: str
    identity: str
    lease_duration: float = attrs.field(default=15.0, validator=_positive)
    renew_deadline: float = attrs.field(default=10.0, validator=_positive)
    retry_period: float = attrs.field(default=2.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")


def _micro_time(moment: datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for a Lease and runs the leader's work only while it holds it."""

    def __init__(
        self,
        client: ClusterClient,
        election: LeaderElection,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._election = election
        self._wall_clock = wall_clock
        self._observed: Mapping[str, Any] | None = None
        self._observed_at = 0.0
        self._leading = False
        self.transitions = 0
        """Times this elector became the leader."""

    @property
    def is_leader(self) -> bool:
        """Whether this elector holds the Lease now (as of its last renewal)."""
        return self._leading

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign until leader, run ``lead`` while leading, and campaign again when the
        Lease is lost. Returns when ``lead`` returns; cancel to stop (the Lease is
        released if held)."""
        try:
            while True:
                await self._acquire()
                if await self._lead(lead):
                    return
        finally:
            if self._leading:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await self._release()
            self._leading = False

    async def _acquire(self) -> None:
        while not await self._try_acquire_or_renew():
            await anyio.sleep(self._election.retry_period)
        self._leading = True
        self.transitions += 1
        log.info("became the leader of lease %s", self._election.name)

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> bool:
        """Run ``lead`` while renewing; True when it returned, False when leadership ended."""
        finished = False
        async with anyio.create_task_group() as tg:

            async def work() -> None:
                nonlocal finished
                await lead()
                finished = True
                tg.cancel_scope.cancel()

            tg.start_soon(work)
            await self._renew_until_lost()
            self._leading = False  # before the work is cancelled: it must see the loss
            tg.cancel_scope.cancel()
        if not finished:
            log.warning("lost the lease %s: stopped leading", self._election.name)
        return finished

    async def _renew_until_lost(self) -> None:
        election = self._election
        renewed_at = anyio.current_time()
        while True:
            await anyio.sleep(election.retry_period)
            with anyio.move_on_after(election.renew_deadline):
                if await self._try_acquire_or_renew():
                    renewed_at = anyio.current_time()
                    continue
            if anyio.current_time() - renewed_at >= election.renew_deadline or not (
                self._held_by_me()
            ):
                return

    def _held_by_me(self) -> bool:
        spec = (self._observed or {}).get("spec") or {}
        return bool(spec.get("holderIdentity") == self._election.identity)

    async def _try_acquire_or_renew(self) -> bool:
        election = self._election
        now = self._wall_clock()
        try:
            current = await self._client.get(LEASES, election.name, namespace=election.namespace)
        except NotFound:
            return await self._create(now)
        except ClusterError as error:
            log.warning("cannot read lease %s: %s", election.name, error)
            return False
        self._observe(current)
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        mine = holder == election.identity
        expired = anyio.current_time() - self._observed_at >= float(
            spec.get("leaseDurationSeconds") or election.lease_duration
        )
        if holder and not mine and not expired:
            return False
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=election.identity,
            leaseDurationSeconds=int(election.lease_duration),
            renewTime=_micro_time(now),
        )
        if not mine:
            new_spec["acquireTime"] = _micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        updated = {**current, "spec": new_spec}
        try:
            stored = await self._client.replace(LEASES, updated, namespace=election.namespace)
        except Conflict:
            return False
        except ClusterError as error:
            log.warning("cannot update lease %s: %s", election.name, error)
            return False
        self._observe(stored)
        return True

    async def _create(self, now: datetime) -> bool:
        election = self._election
        lease = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": election.name, "namespace": election.namespace},
            "spec": {
                "holderIdentity": election.identity,
                "leaseDurationSeconds": int(election.lease_duration),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            stored = await self._client.create(LEASES, lease, namespace=election.namespace)
        except (AlreadyExists, Conflict):
            return False
        except ClusterError as error:
            log.warning("cannot create lease %s: %s", election.name, error)
            return False
        self._observe(stored)
        return True

    def _observe(self, lease: Mapping[str, Any]) -> None:
        """Remember the Lease and restart the expiry clock when its record changed."""
        old = (self._observed or {}).get("spec")
        if old != lease.get("spec"):
            self._observed_at = anyio.current_time()
        self._observed = lease

    async def _release(self) -> None:
        """Give the Lease up (holder cleared, one-second duration), if still ours."""
        election = self._election
        if self._observed is None or not self._held_by_me():
            return
        spec = dict(self._observed.get("spec") or {})
        spec.update(holderIdentity="", leaseDurationSeconds=1)
        try:
            await self._client.replace(
                LEASES, {**self._observed, "spec": spec}, namespace=election.namespace
            )
        except ClusterError as error:
            log.warning("cannot release lease %s: %s", election.name, error)

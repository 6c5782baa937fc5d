"""The informer against the fake API server: sync, updates, resume, re-list, scoping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from support.kube import FakeKube
from workqueue_kubernetes import (
    JOBS,
    WORKS,
    Backoff,
    CacheEvent,
    Informer,
    KubernetesClusterClient,
    controller_owner_key,
    owner_keys,
)

pytestmark = pytest.mark.anyio
NS = "default"
FAST = Backoff(initial=0.02, maximum=0.1)


def work(name: str, labels: dict[str, str] | None = None, namespace: str = NS) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "workType": "job",
            "template": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
        },
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[CacheEvent] = []

    def __call__(self, event: CacheEvent) -> None:
        self.events.append(event)

    def seen(self) -> list[tuple[str, str]]:
        return [(e.type.value, e.key) for e in self.events]

    def versions(self) -> list[tuple[str, str]]:
        return [(e.key, e.object["metadata"]["resourceVersion"]) for e in self.events]


async def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.01)


@asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(informer.run)
        with anyio.fail_after(10):
            await informer.wait_synced()
        yield informer
        tg.cancel_scope.cancel()


async def test_initial_sync_and_updates(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    await cluster.create(WORKS, work("a"))
    await cluster.create(WORKS, work("b"))
    listed_at = str(fake_kube.resource_version)
    recorder = Recorder()
    informer = Informer(cluster, WORKS, namespace=NS, backoff=FAST)
    informer.add_handler(recorder)
    assert not informer.has_synced
    async with running(informer):
        assert informer.keys() == ["default/a", "default/b"]
        assert recorder.seen() == [("ADDED", "default/a"), ("ADDED", "default/b")]
        await cluster.merge_patch(WORKS, "a", {"spec": {"maxRetries": 1}}, namespace=NS)
        await cluster.delete(WORKS, "b", namespace=NS)
        await cluster.create(WORKS, work("c"))
        await eventually(lambda: len(recorder.events) == 5)
        cached = informer.get("default/a")
        assert cached is not None
        assert cached["spec"]["maxRetries"] == 1
    assert recorder.seen()[2:] == [
        ("MODIFIED", "default/a"),
        ("DELETED", "default/b"),
        ("ADDED", "default/c"),
    ]
    modified = recorder.events[2]
    assert modified.old is not None and "maxRetries" not in modified.old["spec"]
    assert informer.keys() == ["default/a", "default/c"]
    assert informer.list_count == 1
    await eventually(lambda: fake_kube.open_watches == 0)  # cancelling closed the stream
    watches = [r for r in fake_kube.requests if r.verb == "watch"]
    assert watches[0].query["allowWatchBookmarks"] == "true"
    assert watches[0].query["resourceVersion"] == listed_at


async def test_resumes_after_dropped_watches_without_losing_or_repeating_events(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    recorder = Recorder()
    informer = Informer(cluster, WORKS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        fake_kube.drop_watches_after(2)
        for i in range(10):
            await cluster.create(WORKS, work(f"w{i}"))
            await cluster.merge_patch(WORKS, f"w{i}", {"spec": {"maxRetries": 1}}, namespace=NS)
        await eventually(lambda: len(recorder.events) == 20)
        await anyio.sleep(0.1)  # a duplicate would arrive now
    assert len(recorder.events) == 20
    assert len(set(recorder.versions())) == 20
    assert informer.list_count == 1
    assert informer.watch_count >= 10
    resumed = [r.query.get("resourceVersion") for r in fake_kube.requests if r.verb == "watch"]
    assert all(resumed)  # every watch resumed from a version, none started over


async def test_relists_on_expired_watch_and_reports_what_changed_meanwhile(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    await cluster.create(WORKS, work("a"))
    await cluster.create(WORKS, work("b"))
    recorder = Recorder()
    informer = Informer(cluster, WORKS, namespace=NS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        await fake_kube.go_down()  # the watch breaks; the informer retries with backoff
        works = fake_kube.resource("works")
        fake_kube.delete_object(works, NS, "b")
        fake_kube.create_object(works, NS, work("c"))
        compacted = fake_kube.compact()  # the informer's version is now too old
        await anyio.sleep(0.2)
        await fake_kube.come_up()
        await eventually(lambda: informer.list_count == 2 and informer.get("default/c") is not None)
    assert informer.keys() == ["default/a", "default/c"]
    assert recorder.seen()[2:] == [("DELETED", "default/b"), ("ADDED", "default/c")]
    expired_starts = [
        r
        for r in fake_kube.requests
        if r.verb == "watch" and int(r.query["resourceVersion"]) < compacted
    ]
    assert expired_starts  # answered 200 with an ERROR event, then the informer re-listed
    assert all(r.status == 200 for r in expired_starts)


async def test_relists_on_http_410(cluster: KubernetesClusterClient, fake_kube: FakeKube) -> None:
    recorder = Recorder()
    informer = Informer(cluster, WORKS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        fake_kube.fail_next(1, 410, verb="watch")
        fake_kube.expire_watches()  # in-stream ERROR 410 first, then HTTP 410 on a re-watch
        await eventually(lambda: informer.list_count >= 2)
        await cluster.create(WORKS, work("after"))
        await eventually(lambda: informer.get("default/after") is not None)
    assert recorder.seen() == [("ADDED", "default/after")]


async def test_label_selector_and_namespace_scope(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    await cluster.create(WORKS, work("mine", {"agent": "a1"}))
    await cluster.create(WORKS, work("theirs", {"agent": "a2"}))
    await cluster.create(WORKS, work("elsewhere", {"agent": "a1"}, namespace="other"))
    recorder = Recorder()
    informer = Informer(cluster, WORKS, namespace=NS, label_selector="agent=a1", backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        assert informer.keys() == ["default/mine"]
        await cluster.merge_patch(
            WORKS, "theirs", {"metadata": {"labels": {"agent": "a1"}}}, namespace=NS
        )
        await cluster.merge_patch(
            WORKS, "mine", {"metadata": {"labels": {"agent": "a3"}}}, namespace=NS
        )
        await eventually(lambda: informer.keys() == ["default/theirs"])
    assert recorder.seen() == [
        ("ADDED", "default/mine"),
        ("ADDED", "default/theirs"),
        ("DELETED", "default/mine"),
    ]
    assert all(
        r.query.get("labelSelector") == "agent=a1"
        for r in fake_kube.requests
        if r.verb in ("list", "watch")
    )


async def test_server_down_and_back(cluster: KubernetesClusterClient, fake_kube: FakeKube) -> None:
    recorder = Recorder()
    informer = Informer(cluster, WORKS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        outage = fake_kube.down_for(2.0)
        with anyio.fail_after(5):
            await outage
        await cluster.create(WORKS, work("after-outage"))
        await eventually(lambda: informer.get("default/after-outage") is not None)
    assert recorder.seen() == [("ADDED", "default/after-outage")]
    assert informer.list_count == 1


async def test_bookmarks_advance_the_version(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    await cluster.create(WORKS, work("a"))
    informer = Informer(cluster, WORKS, namespace="other", backoff=FAST)
    async with running(informer):
        before = informer.resource_version
        await cluster.create(WORKS, work("b"))  # not in the informer's namespace
        fake_kube.trigger_bookmarks()
        await eventually(lambda: informer.resource_version != before)
    assert informer.resource_version == str(fake_kube.resource_version)
    assert informer.keys() == []


async def test_owner_lookup_enqueues_the_owning_work(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    fake_kube.jobs.enabled = True
    owner = await cluster.create(WORKS, work("w"))
    job = {
        "metadata": {
            "name": "w-0",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "brokkr.io/v1alpha1",
                    "kind": "Work",
                    "name": "w",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "i"}]}
            }
        },
    }
    queue: list[str] = []

    def enqueue_owner(event: CacheEvent) -> None:
        key = controller_owner_key(event.object, WORKS)
        if key is not None:
            queue.append(key)

    informer = Informer(cluster, JOBS, namespace=NS, backoff=FAST)
    informer.add_handler(enqueue_owner)
    async with running(informer):
        created = await cluster.create(JOBS, job)
        assert owner_keys(created, WORKS) == ["default/w"]
        assert owner_keys(created, JOBS) == []

        def completed() -> bool:
            cached = informer.get("default/w-0")
            conditions = (cached or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Complete" for c in conditions)

        await eventually(completed)
    assert set(queue) == {"default/w"}
    assert len(queue) >= 3  # created, started, success criteria met, complete


async def test_an_own_write_is_cached_at_once_and_its_echo_is_not_an_event(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    recorder = Recorder()
    informer = Informer(cluster, WORKS, namespace=NS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        created = await cluster.create(WORKS, work("w"))
        await eventually(lambda: informer.get("default/w") is not None)
        written = await cluster.replace_status(
            WORKS, {**created, "status": {"phase": "Running"}}, namespace=NS
        )
        event = informer.remember(written)
        assert event is not None and event.type.value == "MODIFIED"
        assert event.old is not None
        assert event.old["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        # Read back at once, before the watch has delivered the write.
        assert informer.get("default/w") is written
        version = int(written["metadata"]["resourceVersion"])
        await eventually(lambda: int(informer.resource_version) >= version)
        # Remembering the same version again changes nothing.
        assert informer.remember(written) is None
        # The watch's echo of the write carried the remembered version: no handler call.
        assert recorder.seen() == [("ADDED", "default/w")]
        # A later change by someone else is an event as before.
        await cluster.merge_patch(WORKS, "w", {"metadata": {"labels": {"x": "1"}}}, namespace=NS)
        await eventually(lambda: len(recorder.events) == 2)
    assert recorder.seen() == [("ADDED", "default/w"), ("MODIFIED", "default/w")]


async def test_a_watch_event_older_than_a_remembered_write_does_not_replace_it(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    recorder = Recorder()
    informer = Informer(cluster, WORKS, namespace=NS, backoff=FAST)
    informer.add_handler(recorder)
    async with running(informer):
        created = await cluster.create(WORKS, work("w"))
        await eventually(lambda: informer.get("default/w") is not None)
        # A write whose answer is ahead of every version the server has issued so far
        # stands for a write whose watch event is still on its way.
        ahead = str(fake_kube.resource_version + 1000)
        remembered = {**created, "metadata": {**created["metadata"], "resourceVersion": ahead}}
        assert informer.remember(remembered) is not None
        await cluster.merge_patch(WORKS, "w", {"metadata": {"labels": {"x": "1"}}}, namespace=NS)
        patched_version = fake_kube.resource_version
        await eventually(lambda: int(informer.resource_version) >= patched_version)
        assert informer.get("default/w") is remembered
        assert recorder.seen() == [("ADDED", "default/w")]
        # An older DELETED event does not remove what was remembered later either.
        await cluster.delete(WORKS, "w", namespace=NS)
        deleted_version = fake_kube.resource_version
        await eventually(lambda: int(informer.resource_version) >= deleted_version)
        assert informer.get("default/w") is remembered

"""The fake API server, exercised over HTTP with the real kubernetes-asyncio client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from support.kube import DELAY_ANNOTATION, OUTCOME_ANNOTATION, FakeKube

pytestmark = pytest.mark.anyio

GROUP, VERSION, PLURAL = "brokkr.io", "v1alpha1", "works"
NS = "default"


def work(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Work",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "workType": "job",
            "maxRetries": 2,
            "template": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": f"{name}-job"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


def job(name: str, annotations: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations or {}, **meta},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
        },
    }


def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


async def create_work(api: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api)
    created: dict[str, Any] = await objects.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, body
    )
    return created


# --- objects, versions and errors ----------------------------------------------------


async def test_create_sets_server_fields_and_a_duplicate_is_already_exists(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    created = await create_work(api_client, work("w1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) == fake_kube.resource_version
    second = await create_work(api_client, work("w2"))
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    with pytest.raises(ApiException) as caught:
        await create_work(api_client, work("w1"))
    body = status_of(caught.value)
    assert caught.value.status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "w1", "group": GROUP, "kind": PLURAL}


async def test_unknown_object_is_not_found(api_client: client.ApiClient) -> None:
    with pytest.raises(ApiException) as caught:
        await client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "missing"
        )
    assert caught.value.status == 404
    assert status_of(caught.value)["reason"] == "NotFound"


async def test_stale_resource_version_is_a_conflict(api_client: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api_client)
    created = await create_work(api_client, work("w1"))
    fresh = dict(created, spec={**created["spec"], "maxRetries": 3})
    updated = await objects.replace_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", fresh
    )
    assert updated["metadata"]["generation"] == 2
    stale = dict(created, spec={**created["spec"], "maxRetries": 4})
    with pytest.raises(ApiException) as caught:
        await objects.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", stale)
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    stale_patch = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiException) as caught:
        await objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "w1",
            stale_patch,
            _content_type="application/merge-patch+json",
        )
    assert caught.value.status == 409


async def test_custom_resource_update_needs_a_resource_version(
    api_client: client.ApiClient,
) -> None:
    created = await create_work(api_client, work("w1"))
    del created["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as caught:
        await client.CustomObjectsApi(api_client).replace_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "w1", created
        )
    assert caught.value.status == 422


async def test_invalid_work_is_rejected_with_causes(api_client: client.ApiClient) -> None:
    body = work("w1", maxRetries=101)
    body["spec"]["template"] = []
    body["status"] = {"phase": "Sleeping"}  # dropped on create: status is a subresource
    with pytest.raises(ApiException) as caught:
        await create_work(api_client, body)
    status = status_of(caught.value)
    assert caught.value.status == 422
    assert status["reason"] == "Invalid"
    fields = {cause["field"] for cause in status["details"]["causes"]}
    assert fields == {"spec.maxRetries", "spec.template"}


async def test_unknown_fields_are_pruned_or_rejected_when_strict(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    body = work("w1")
    body["spec"]["colour"] = "blue"
    created = await create_work(api_client, body)
    assert "colour" not in created["spec"]
    body = work("w2")
    body["spec"]["colour"] = "blue"
    with pytest.raises(ApiException) as caught:
        await objects.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, body, field_validation="Strict"
        )
    assert caught.value.status == 400
    assert "spec.colour" in status_of(caught.value)["message"]
    assert fake_kube.get(PLURAL, NS, "w2") is None


# --- the status subresource and generation ----------------------------------------------


async def test_status_subresource_takes_only_status(api_client: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api_client)
    created = await create_work(api_client, work("w1"))
    on_status = dict(created, spec={**created["spec"], "maxRetries": 9})
    on_status["status"] = {"phase": "Running", "retries": 1}
    written = await objects.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", on_status
    )
    assert written["status"] == {"phase": "Running", "retries": 1}
    assert written["spec"]["maxRetries"] == 2
    assert written["metadata"]["generation"] == 1
    on_main = dict(written, status={"phase": "Failed"})
    on_main["metadata"] = dict(written["metadata"], labels={"a": "b"})
    replaced = await objects.replace_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", on_main
    )
    assert replaced["status"] == {"phase": "Running", "retries": 1}
    assert replaced["metadata"]["labels"] == {"a": "b"}
    assert replaced["metadata"]["generation"] == 1  # metadata changes keep the generation
    patched = await objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        {"status": {"retries": 2}, "spec": {"maxRetries": 7}},
        _content_type="application/merge-patch+json",
    )
    assert patched["status"] == {"phase": "Running", "retries": 2}
    assert patched["spec"]["maxRetries"] == 2


async def test_a_write_that_changes_nothing_keeps_the_version(
    api_client: client.ApiClient,
) -> None:
    created = await create_work(api_client, work("w1"))
    same = await client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        {"spec": {"maxRetries": 2}},
        _content_type="application/merge-patch+json",
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


# --- patches and their content types -----------------------------------------------------


async def test_custom_object_patch_content_types(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("w1"))
    # kubernetes-asyncio 36 sends a dict body to custom objects as json-patch+json by
    # default, which the server rejects: a JSON patch is a list.
    with pytest.raises(ApiException) as caught:
        await objects.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "w1", {"spec": {"maxRetries": 5}}
        )
    assert caught.value.status == 422
    assert fake_kube.requests[-1].content_type == "application/json-patch+json"
    merged = await objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        {"spec": {"maxRetries": 5, "workId": "x"}},
        _content_type="application/merge-patch+json",
    )
    assert fake_kube.requests[-1].content_type == "application/merge-patch+json"
    assert merged["spec"]["maxRetries"] == 5
    removed = await objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        {"spec": {"workId": None}},
        _content_type="application/merge-patch+json",
    )
    assert "workId" not in removed["spec"]
    patched = await objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        [
            {"op": "test", "path": "/spec/maxRetries", "value": 5},
            {"op": "replace", "path": "/spec/maxRetries", "value": 6},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        ],
    )
    assert fake_kube.requests[-1].content_type == "application/json-patch+json"
    assert patched["spec"]["maxRetries"] == 6
    assert patched["metadata"]["labels"] == {"x": "y"}
    with pytest.raises(ApiException) as caught:
        await objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "w1",
            [{"op": "test", "path": "/spec/maxRetries", "value": 5}],
        )
    assert caught.value.status == 422


async def test_job_validation_defaults_and_strategic_merge_patch(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    fake_kube.jobs.enabled = False
    batch = client.BatchV1Api(api_client)
    bad = job("j0")
    bad["spec"]["backoffLimit"] = "many"
    with pytest.raises(ApiException) as caught:
        await batch.create_namespaced_job(NS, bad)
    assert caught.value.status == 422
    causes = status_of(caught.value)["details"]["causes"]
    assert [c["field"] for c in causes] == ["spec.backoffLimit"]
    unbounded = job("j1")
    del unbounded["spec"]["backoffLimit"]
    created = await batch.create_namespaced_job(NS, unbounded)
    assert created.spec.backoff_limit == 6  # the API server's default
    assert created.spec.completions == 1
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    patched = await batch.patch_namespaced_job("j1", NS, {"metadata": {"labels": {"k": "v"}}})
    assert fake_kube.requests[-1].content_type == "application/strategic-merge-patch+json"
    assert patched.metadata.labels["k"] == "v"
    assert patched.metadata.labels["job-name"] == "j1"


# --- deletion, finalizers and garbage collection ------------------------------------------


async def test_delete_with_finalizers_and_preconditions(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    body = work("w1")
    body["metadata"]["finalizers"] = ["brokkr.io/cleanup"]
    created = await create_work(api_client, body)
    with pytest.raises(ApiException) as caught:
        await objects.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "w1",
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="other")),
        )
    assert caught.value.status == 409
    held = await objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["uid"] == created["metadata"]["uid"]
    assert fake_kube.get(PLURAL, NS, "w1") is not None
    await objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "w1",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    assert fake_kube.get(PLURAL, NS, "w1") is None
    await create_work(api_client, work("w2"))
    gone = await objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w2")
    assert gone["kind"] == "Status"
    assert gone["status"] == "Success"


def owned_job(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    return job(
        name,
        ownerReferences=[
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    )


async def wait_until(predicate: Any, seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.01)


async def test_owner_references_are_garbage_collected(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    fake_kube.jobs.enabled = False
    objects = client.CustomObjectsApi(api_client)
    batch = client.BatchV1Api(api_client)
    owner = await create_work(api_client, work("w1"))
    await batch.create_namespaced_job(NS, owned_job("child", owner))
    await batch.create_namespaced_job(NS, job("stranger"))
    await objects.delete_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", propagation_policy="Background"
    )
    await wait_until(lambda: fake_kube.get("jobs", NS, "child") is None)
    assert fake_kube.get("jobs", NS, "stranger") is not None

    orphaning = await create_work(api_client, work("w2"))
    await batch.create_namespaced_job(NS, owned_job("kept", orphaning))
    await objects.delete_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w2", propagation_policy="Orphan"
    )
    kept = fake_kube.get("jobs", NS, "kept")
    assert kept is not None
    assert "ownerReferences" not in kept["metadata"]

    foreground = await create_work(api_client, work("w3"))
    await batch.create_namespaced_job(NS, owned_job("first", foreground))
    held = await objects.delete_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w3", propagation_policy="Foreground"
    )
    assert held["metadata"]["finalizers"] == ["foregroundDeletion"]
    await wait_until(lambda: fake_kube.get(PLURAL, NS, "w3") is None)
    assert fake_kube.get("jobs", NS, "first") is None


# --- list ------------------------------------------------------------------------------


async def test_list_selectors_namespaces_and_pages(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("a", {"tier": "web", "env": "prod"}))
    await create_work(api_client, work("b", {"tier": "db"}))
    await create_work(api_client, work("c", {"env": "dev"}))
    other = work("d", {"tier": "web"})
    await objects.create_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, other)

    async def names(selector: str | None = None, **kwargs: Any) -> list[str]:
        if selector is not None:
            kwargs["label_selector"] = selector
        listed = await objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, **kwargs)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert await names() == ["a", "b", "c"]
    assert await names("tier=web") == ["a"]
    assert await names("tier!=web") == ["b", "c"]
    assert await names("tier in (web,db)") == ["a", "b"]
    assert await names("tier notin (web)") == ["b", "c"]
    assert await names("env") == ["a", "c"]
    assert await names("!env") == ["b"]
    assert await names("tier=web,env=prod") == ["a"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    everywhere = await objects.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector="tier=web"
    )
    assert sorted(i["metadata"]["name"] for i in everywhere["items"]) == ["a", "d"]
    assert everywhere["metadata"]["resourceVersion"] == str(fake_kube.resource_version)
    first = await objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    rest = await objects.list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, limit=2, _continue=first["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]
    assert "continue" not in rest["metadata"]
    await create_work(api_client, work("e"))
    fake_kube.compact()
    with pytest.raises(ApiException) as caught:
        await objects.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, limit=2, _continue=first["metadata"]["continue"]
        )
    assert caught.value.status == 410
    assert status_of(caught.value)["reason"] == "Expired"
    with pytest.raises(ApiException) as caught:
        await objects.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, label_selector="tier in web"
        )
    assert caught.value.status == 400


# --- watch -------------------------------------------------------------------------------


async def collect(stream: Any, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with anyio.fail_after(seconds):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_watch_streams_changes_after_a_resource_version(
    api_client: client.ApiClient,
) -> None:
    objects = client.CustomObjectsApi(api_client)
    first = await create_work(api_client, work("a", {"team": "x"}))
    await create_work(api_client, work("b", {"team": "y"}))
    watcher = watch.Watch()
    stream = watcher.stream(
        objects.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        resource_version=first["metadata"]["resourceVersion"],
        label_selector="team=x",
    )
    async with watcher:
        await objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "a",
            {"spec": {"maxRetries": 1}},
            _content_type="application/merge-patch+json",
        )
        await objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "b",
            {"metadata": {"labels": {"team": "x"}}},
            _content_type="application/merge-patch+json",
        )
        await objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "a",
            {"metadata": {"labels": {"team": "z"}}},
            _content_type="application/merge-patch+json",
        )
        await objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "b")
        events = await collect(stream, 4)
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    # b starts matching (ADDED), a stops matching (DELETED), as the real server shows them.
    assert seen == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


async def test_watch_without_version_lists_first(api_client: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("a"))
    watcher = watch.Watch()
    async with watcher:
        stream = watcher.stream(objects.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL)
        events = await collect(stream, 1)
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"]["metadata"]["name"] == "a"


async def test_bookmarks_only_when_allowed(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    fake_kube.bookmark_interval = 0.05
    created = await create_work(api_client, work("a"))
    rv = created["metadata"]["resourceVersion"]
    watcher = watch.Watch()
    async with watcher:
        stream = watcher.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=rv,
            allow_watch_bookmarks=True,
        )
        events = await collect(stream, 1)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["raw_object"]["metadata"] == {"resourceVersion": rv}
    # Without allowWatchBookmarks the stream stays silent until the server times it out.
    watcher = watch.Watch()
    async with watcher:
        stream = watcher.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=rv,
            timeout_seconds=1,
        )
        assert await collect(stream, 1) == []


async def test_watch_from_a_compacted_version_is_an_error_event_in_a_200_stream(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    created = await create_work(api_client, work("a"))
    await create_work(api_client, work("b"))
    fake_kube.compact()
    response = await objects.list_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        watch=True,
        resource_version=created["metadata"]["resourceVersion"],
        _preload_content=False,
    )
    assert response.status == 200
    with anyio.fail_after(5):
        line = await response.content.readline()
        rest = await response.content.read()
    response.close()
    event = json.loads(line)
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert rest == b""
    # kubernetes-asyncio's Watch turns it into ApiException(410) (with timeout_seconds it
    # does not retry on its own).
    watcher = watch.Watch()
    async with watcher:
        stream = watcher.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=5,
        )
        with pytest.raises(ApiException) as caught:
            await collect(stream, 1)
    assert caught.value.status == 410


async def test_established_watch_gets_expired(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    created = await create_work(api_client, work("a"))
    response = await objects.list_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        watch=True,
        resource_version=created["metadata"]["resourceVersion"],
        _preload_content=False,
    )
    await wait_until(lambda: fake_kube.open_watches == 1)
    fake_kube.expire_watches()
    with anyio.fail_after(5):
        event = json.loads(await response.content.readline())
        assert await response.content.read() == b""
    response.close()
    assert (event["type"], event["object"]["code"]) == ("ERROR", 410)


# --- fault injection -----------------------------------------------------------------------


async def test_injected_errors_and_conflict_storm(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("a"))
    fake_kube.fail_next(2, 500, method="GET", path="/works/a")
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
        assert caught.value.status == 500
        assert status_of(caught.value)["reason"] == "InternalError"
    assert await objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    fake_kube.conflict_status_writes(2)
    patch = {"status": {"phase": "Running"}}
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                NS,
                PLURAL,
                "a",
                patch,
                _content_type="application/merge-patch+json",
            )
        assert status_of(caught.value)["reason"] == "Conflict"
    written = await objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "a", patch, _content_type="application/merge-patch+json"
    )
    assert written["status"]["phase"] == "Running"


async def test_watches_dropped_after_k_events(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    for name in "abc":
        await create_work(api_client, work(name))
    fake_kube.drop_watches_after(2)
    response = await objects.list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, watch=True, _preload_content=False
    )
    with anyio.fail_after(5):
        lines = (await response.content.read()).splitlines()
    response.close()
    assert [json.loads(line)["object"]["metadata"]["name"] for line in lines] == ["a", "b"]


async def test_latency_and_outage(api_client: client.ApiClient, fake_kube: FakeKube) -> None:
    objects = client.CustomObjectsApi(api_client)
    fake_kube.latency = 0.01
    await create_work(api_client, work("a"))
    fake_kube.latency = 0.0
    await fake_kube.go_down()
    assert not fake_kube.is_up
    with pytest.raises(Exception) as caught:  # noqa: PT011 - aiohttp's connection error
        await objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    assert "Cannot connect" in str(caught.value) or isinstance(caught.value, OSError)
    await fake_kube.come_up()
    again = await objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    assert again["metadata"]["name"] == "a"
    outage = fake_kube.down_for(0.2)
    with anyio.fail_after(5):
        await outage
    assert fake_kube.is_up


async def test_request_log_classifies_verbs(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("a"))
    await objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    await objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector="x")
    await objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "a")
    verbs = [(r.verb, r.resource, r.name) for r in fake_kube.requests]
    assert verbs == [
        ("create", PLURAL, None),
        ("get", PLURAL, "a"),
        ("list", PLURAL, None),
        ("delete", PLURAL, "a"),
    ]
    assert fake_kube.requests[2].query == {"labelSelector": "x"}
    assert fake_kube.count("create", PLURAL) == 1


# --- the simulated Job controller ----------------------------------------------------------


async def run_job(
    api_client: client.ApiClient, fake_kube: FakeKube, name: str, outcome: str | None
) -> dict[str, Any]:
    annotations = {} if outcome is None else {OUTCOME_ANNOTATION: outcome}
    await client.BatchV1Api(api_client).create_namespaced_job(NS, job(name, annotations))

    def finished() -> bool:
        current = fake_kube.get("jobs", NS, name)
        types = {c["type"] for c in (current or {}).get("status", {}).get("conditions", [])}
        return bool(types & {"Complete", "Failed"})

    await wait_until(finished)
    result = fake_kube.get("jobs", NS, name)
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("outcome", "conditions", "reason"),
    [
        (None, ["SuccessCriteriaMet", "Complete"], "CompletionsReached"),
        ("Complete", ["SuccessCriteriaMet", "Complete"], "CompletionsReached"),
        ("SuccessCriteriaMet", ["SuccessCriteriaMet", "Complete"], "SuccessPolicy"),
        ("Failed", ["FailureTarget", "Failed"], "BackoffLimitExceeded"),
        ("Failed:BackoffLimitExceeded", ["FailureTarget", "Failed"], "BackoffLimitExceeded"),
        ("Failed:DeadlineExceeded", ["FailureTarget", "Failed"], "DeadlineExceeded"),
        ("Failed:PodFailurePolicy", ["FailureTarget", "Failed"], "PodFailurePolicy"),
        ("FailedIndexes", ["FailureTarget", "Failed"], "FailedIndexes"),
        ("MaxFailedIndexesExceeded", ["FailureTarget", "Failed"], "MaxFailedIndexesExceeded"),
    ],
)
async def test_job_controller_outcomes(
    api_client: client.ApiClient,
    fake_kube: FakeKube,
    outcome: str | None,
    conditions: list[str],
    reason: str,
) -> None:
    result = await run_job(api_client, fake_kube, "j", outcome)
    status = result["status"]
    assert [c["type"] for c in status["conditions"]] == conditions
    for condition in status["conditions"]:
        assert condition["status"] == "True"
        assert condition["reason"] == reason
        assert condition["message"]
        assert condition["lastTransitionTime"].endswith("Z")
    assert status["startTime"]
    assert status["active"] == 0
    if conditions[-1] == "Complete":
        assert status["succeeded"] == 1
        assert status["completionTime"]
    else:
        assert status["failed"] >= 1
        assert "completionTime" not in status


async def test_job_controller_never_and_toggle(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    batch = client.BatchV1Api(api_client)
    await batch.create_namespaced_job(NS, job("running", {OUTCOME_ANNOTATION: "never"}))
    await wait_until(
        lambda: "startTime" in (fake_kube.get("jobs", NS, "running") or {}).get("status", {})
    )
    fake_kube.jobs.enabled = False
    await batch.create_namespaced_job(NS, job("idle"))
    fake_kube.jobs.enabled = True
    await batch.create_namespaced_job(NS, job("done"))
    await wait_until(
        lambda: "completionTime" in (fake_kube.get("jobs", NS, "done") or {}).get("status", {})
    )
    running = fake_kube.get("jobs", NS, "running")
    idle = fake_kube.get("jobs", NS, "idle")
    assert running is not None and idle is not None
    assert "conditions" not in running["status"]
    assert running["status"]["active"] == 1
    assert "status" not in idle


@pytest.mark.parametrize(
    ("outcome", "conditions"),
    [("Failed", ["FailureTarget", "Failed"]), ("Complete", ["SuccessCriteriaMet", "Complete"])],
)
async def test_job_controller_finishes_a_job_on_demand_in_the_past(
    api_client: client.ApiClient, fake_kube: FakeKube, outcome: str, conditions: list[str]
) -> None:
    fake_kube.jobs.enabled = False
    await client.BatchV1Api(api_client).create_namespaced_job(NS, job("old"))
    before = datetime.now(UTC).replace(microsecond=0)
    assert await fake_kube.jobs.finish(NS, "old", outcome, ago=3600)
    after = datetime.now(UTC)
    assert await fake_kube.jobs.finish(NS, "missing", outcome) is False
    status = (fake_kube.get("jobs", NS, "old") or {})["status"]
    assert [c["type"] for c in status["conditions"]] == conditions
    times = [status["startTime"]] + [c["lastTransitionTime"] for c in status["conditions"]]
    if outcome == "Complete":
        times.append(status["completionTime"])
    hour = timedelta(hours=1)
    for text in times:
        assert before - hour <= datetime.fromisoformat(text) <= after - hour, text


# --- more resources -------------------------------------------------------------------------

SHIPWRIGHT = Path(__file__).resolve().parents[3].parent / "shared" / "upstream" / "shipwright"


async def test_shipwright_resources_register_in_one_call(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    builds = fake_kube.register_crd(SHIPWRIGHT / "deploy/crds/shipwright.io_builds.yaml", "v1beta1")
    assert (builds.plural, builds.kind, builds.status_subresource) == ("builds", "Build", True)
    sample = yaml.safe_load(
        (
            SHIPWRIGHT / "samples/v1beta1/build/build_buildah_shipwright_managed_push_cr.yaml"
        ).read_text()
    )
    objects = client.CustomObjectsApi(api_client)
    created = await objects.create_namespaced_custom_object(
        "shipwright.io", "v1beta1", NS, "builds", sample
    )
    assert created["metadata"]["generation"] == 1
    sample["metadata"]["name"] = "broken"
    sample["spec"]["output"] = {"pushSecret": "x"}  # output.image is required
    with pytest.raises(ApiException) as caught:
        await objects.create_namespaced_custom_object(
            "shipwright.io", "v1beta1", NS, "builds", sample
        )
    assert caught.value.status == 422


async def test_a_watch_the_client_closes_is_forgotten(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    response = await client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, watch=True, _preload_content=False
    )
    await wait_until(lambda: fake_kube.open_watches == 1)
    response.close()
    await wait_until(lambda: fake_kube.open_watches == 0)


async def test_generate_name_and_exact_list_below_the_window(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    objects = client.CustomObjectsApi(api_client)
    body = work("ignored")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "run-"
    created = await create_work(api_client, body)
    assert created["metadata"]["name"].startswith("run-")
    assert len(created["metadata"]["name"]) == len("run-") + 5
    old = created["metadata"]["resourceVersion"]
    await create_work(api_client, work("later"))
    fake_kube.compact()
    # A plain list with an old version is served ("not older than" is satisfied)...
    listed = await objects.list_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, resource_version=old
    )
    assert len(listed["items"]) == 2
    # ...an exact list below the compaction window is HTTP 410 Expired.
    with pytest.raises(ApiException) as caught:
        await objects.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, resource_version=old, resource_version_match="Exact"
        )
    assert caught.value.status == 410
    assert status_of(caught.value)["reason"] == "Expired"


async def test_job_controller_delay_annotation(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    batch = client.BatchV1Api(api_client)
    await batch.create_namespaced_job(NS, job("slow", {DELAY_ANNOTATION: "30"}))
    fake_kube.jobs.delay = 30.0
    await batch.create_namespaced_job(NS, job("slow-default"))
    await batch.create_namespaced_job(NS, job("quick", {DELAY_ANNOTATION: "0"}))
    await wait_until(
        lambda: "completionTime" in (fake_kube.get("jobs", NS, "quick") or {}).get("status", {})
    )
    for name in ("slow", "slow-default"):
        current = fake_kube.get("jobs", NS, name)
        assert current is not None
        assert current["status"]["startTime"]
        assert "conditions" not in current["status"]


async def test_leases_for_leader_election(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    leases = client.CoordinationV1Api(api_client)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="workqueue-controller"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    created = await leases.create_namespaced_lease(NS, body)
    assert created.spec.holder_identity == "a"
    taken = await leases.replace_namespaced_lease(
        "workqueue-controller",
        NS,
        client.V1Lease(
            metadata=created.metadata,
            spec=client.V1LeaseSpec(holder_identity="b", lease_duration_seconds=15),
        ),
    )
    assert taken.spec.holder_identity == "b"
    with pytest.raises(ApiException) as caught:  # the other candidate's stale read
        await leases.replace_namespaced_lease(
            "workqueue-controller",
            NS,
            client.V1Lease(metadata=created.metadata, spec=client.V1LeaseSpec(holder_identity="c")),
        )
    assert caught.value.status == 409
    assert fake_kube.count("update", "leases") == 2


async def test_field_selector_on_namespace(api_client: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api_client)
    await create_work(api_client, work("here"))
    await objects.create_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, work("there"))
    listed = await objects.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector="metadata.namespace!=default"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["there"]


async def test_discovery(api_client: client.ApiClient) -> None:
    groups = await client.ApisApi(api_client).get_api_versions()
    names = {g.name for g in groups.groups}
    assert {"batch", "brokkr.io", "coordination.k8s.io"} <= names
    core = await client.CoreApi(api_client).get_api_versions()
    assert core.versions == ["v1"]
    batch = await client.BatchV1Api(api_client).get_api_resources()
    assert {r.name for r in batch.resources} == {"jobs", "jobs/status"}
    version = await client.VersionApi(api_client).get_code()
    assert (version.major, version.minor) == ("1", "34")
    works = await api_client.call_api(
        "/apis/brokkr.io/v1alpha1",
        "GET",
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    assert [r["name"] for r in works["resources"]] == ["works", "works/status"]
    assert works["resources"][0]["namespaced"] is True


async def test_deleting_a_job_orphans_its_pods_by_default(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    fake_kube.jobs.enabled = False
    created = await client.BatchV1Api(api_client).create_namespaced_job(NS, job("j"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "j-abcde",
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": created.metadata.uid}
            ],
        },
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    core = client.CoreV1Api(api_client)
    await core.create_namespaced_pod(NS, pod)
    await client.BatchV1Api(api_client).delete_namespaced_job("j", NS)
    await anyio.sleep(fake_kube.gc_delay * 5)
    kept = fake_kube.get("pods", NS, "j-abcde")
    assert kept is not None  # batch/v1 Jobs default to orphaning, as in a real cluster
    assert "ownerReferences" not in kept["metadata"]

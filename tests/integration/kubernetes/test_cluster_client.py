"""The adapter's ClusterClient against the fake API server (real HTTP, kubernetes-asyncio)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from support.kube import FakeKube
from workqueue_kubernetes import (
    JOBS,
    WORKS,
    AlreadyExists,
    ClusterError,
    Conflict,
    Gone,
    Invalid,
    KubernetesClusterClient,
    NotFound,
    Preconditions,
    PropagationPolicy,
    Unavailable,
    WatchEventType,
    load_configuration,
    open_cluster_client,
)
from workqueue_kubernetes.client import environment_proxy

pytestmark = pytest.mark.anyio
NS = "default"


def work(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {
            "workType": "job",
            "template": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": f"{name}-0"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox"}],
                        }
                    }
                },
            },
        },
    }


async def test_crud_on_works(cluster: KubernetesClusterClient, fake_kube: FakeKube) -> None:
    created = await cluster.create(WORKS, work("a", {"team": "x"}))
    assert created["apiVersion"] == "brokkr.io/v1alpha1"
    assert created["metadata"]["generation"] == 1
    got = await cluster.get(WORKS, "a", namespace=NS)
    assert got == created
    replaced = await cluster.replace(
        WORKS, {**created, "spec": {**created["spec"], "maxRetries": 1}}
    )
    assert replaced["spec"]["maxRetries"] == 1
    assert replaced["metadata"]["generation"] == 2
    patched = await cluster.merge_patch(
        WORKS,
        "a",
        {"spec": {"maxRetries": 2}},
        namespace=NS,
        resource_version=replaced["metadata"]["resourceVersion"],
    )
    assert patched["spec"]["maxRetries"] == 2
    record = fake_kube.requests[-1]
    assert (record.verb, record.content_type) == ("patch", "application/merge-patch+json")
    assert record.query["fieldValidation"] == "Strict"
    assert await cluster.delete(WORKS, "a", namespace=NS) is None
    with pytest.raises(NotFound):
        await cluster.get(WORKS, "a", namespace=NS)


async def test_list_pages_and_selects(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    for i in range(5):
        await cluster.create(WORKS, work(f"w{i}", {"team": "x" if i % 2 else "y"}))
    listed = await cluster.list(WORKS, namespace=NS, page_size=2)
    assert [o["metadata"]["name"] for o in listed.items] == ["w0", "w1", "w2", "w3", "w4"]
    assert listed.resource_version == str(fake_kube.resource_version)
    assert fake_kube.count("list", "works") == 3
    selected = await cluster.list(WORKS, label_selector="team=x")
    assert [o["metadata"]["name"] for o in selected.items] == ["w1", "w3"]
    named = await cluster.list(WORKS, field_selector="metadata.name=w4")
    assert [o["metadata"]["name"] for o in named.items] == ["w4"]


async def test_errors_map_to_the_port(cluster: KubernetesClusterClient) -> None:
    created = await cluster.create(WORKS, work("a"))
    with pytest.raises(AlreadyExists):
        await cluster.create(WORKS, work("a"))
    await cluster.merge_patch(WORKS, "a", {"metadata": {"labels": {"k": "v"}}}, namespace=NS)
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        await cluster.replace(WORKS, created)
    with pytest.raises(Conflict):
        await cluster.merge_patch(
            WORKS, "a", {"spec": {"maxRetries": 0}}, namespace=NS, resource_version=stale
        )
    with pytest.raises(Conflict):
        await cluster.patch_status(
            WORKS, "a", {"status": {"phase": "Running"}}, namespace=NS, resource_version=stale
        )
    bad = work("b")
    bad["spec"]["maxRetries"] = -1
    with pytest.raises(Invalid) as caught:
        await cluster.create(WORKS, bad)
    assert [c.field for c in caught.value.causes] == ["spec.maxRetries"]
    unknown = work("c")
    unknown["spec"]["colour"] = "blue"
    with pytest.raises(ClusterError) as raised:
        await cluster.create(WORKS, unknown)  # fieldValidation=Strict
    assert raised.value.status == 400


async def test_status_subresource(cluster: KubernetesClusterClient) -> None:
    created = await cluster.create(WORKS, work("a"))
    written = await cluster.patch_status(
        WORKS,
        "a",
        {"status": {"phase": "Running", "retries": 0}},
        namespace=NS,
        resource_version=created["metadata"]["resourceVersion"],
    )
    assert written["status"] == {"phase": "Running", "retries": 0}
    replaced = await cluster.replace_status(
        WORKS,
        {
            **written,
            "spec": {**written["spec"], "maxRetries": 9},
            "status": {"phase": "Succeeded", "retries": 1},
        },
    )
    assert replaced["status"]["phase"] == "Succeeded"
    assert "maxRetries" not in replaced["spec"]
    assert replaced["metadata"]["generation"] == 1


async def test_delete_options(cluster: KubernetesClusterClient, fake_kube: FakeKube) -> None:
    fake_kube.jobs.enabled = False
    body = work("a")
    body["metadata"]["finalizers"] = ["brokkr.io/keep"]
    created = await cluster.create(WORKS, body)
    with pytest.raises(Conflict):
        await cluster.delete(WORKS, "a", namespace=NS, preconditions=Preconditions(uid="x"))
    held = await cluster.delete(
        WORKS,
        "a",
        namespace=NS,
        preconditions=Preconditions(uid=created["metadata"]["uid"]),
    )
    assert held is not None
    assert held["metadata"]["deletionTimestamp"]
    job = {
        "metadata": {"name": "j", "namespace": NS},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "i"}]}
            }
        },
    }
    await cluster.create(JOBS, job)
    assert (
        await cluster.delete(JOBS, "j", namespace=NS, propagation_policy=PropagationPolicy.ORPHAN)
        is None
    )
    assert fake_kube.get("jobs", NS, "j") is None


async def test_watch_events_and_410(cluster: KubernetesClusterClient, fake_kube: FakeKube) -> None:
    created = await cluster.create(WORKS, work("a"))
    await cluster.merge_patch(WORKS, "a", {"spec": {"maxRetries": 1}}, namespace=NS)
    await cluster.delete(WORKS, "a", namespace=NS)
    events = []
    with anyio.fail_after(5):
        async for event in cluster.watch(
            WORKS,
            namespace=NS,
            resource_version=created["metadata"]["resourceVersion"],
            allow_bookmarks=False,
            timeout_seconds=1,
        ):
            events.append(event.type)
    assert events == [WatchEventType.MODIFIED, WatchEventType.DELETED]
    fake_kube.compact()
    with anyio.fail_after(5), pytest.raises(Gone):
        async for _ in cluster.watch(
            WORKS, resource_version=created["metadata"]["resourceVersion"]
        ):
            pass
    fake_kube.fail_next(1, 410, verb="watch")
    with anyio.fail_after(5), pytest.raises(Gone):
        async for _ in cluster.watch(WORKS, resource_version="1"):
            pass


async def test_unreachable_server_is_unavailable(
    cluster: KubernetesClusterClient, fake_kube: FakeKube
) -> None:
    await fake_kube.go_down()
    with pytest.raises(Unavailable):
        await cluster.get(WORKS, "a", namespace=NS)
    await fake_kube.come_up()
    with pytest.raises(NotFound):
        await cluster.get(WORKS, "a", namespace=NS)
    fake_kube.fail_next(1, 503)
    with pytest.raises(Unavailable):
        await cluster.get(WORKS, "a", namespace=NS)


async def test_load_configuration_from_a_kubeconfig(
    kubeconfig: Path, fake_kube: FakeKube, tmp_path: Path
) -> None:
    configuration = await load_configuration(str(kubeconfig))
    assert configuration.host == fake_kube.url
    config = yaml.safe_load(kubeconfig.read_text())
    config["contexts"].append(
        {"name": "other", "context": {"cluster": "elsewhere", "user": "fake"}}
    )
    config["clusters"].append({"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}})
    two = tmp_path / "two"
    two.write_text(yaml.safe_dump(config))
    other = await load_configuration(str(two), "other")
    assert other.host == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="in-cluster"):
        await load_configuration(str(two), in_cluster=True)


def test_the_environment_proxy_for_the_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://api.example:6443") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert environment_proxy("https://api.example:6443") == "http://proxy.example:3128"
    assert environment_proxy("https://internal.example:6443") is None
    assert environment_proxy("http://api.example:8080") is None  # no HTTP_PROXY set


async def test_the_client_reads_the_environment_once_not_per_request(
    kubeconfig: Path, fake_kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    configuration = await load_configuration(str(kubeconfig))
    async with open_cluster_client(configuration) as cluster:
        session = cluster.api.rest_client.pool_manager
        assert session.trust_env is False
        created = await cluster.create(WORKS, work("env"), namespace="default")
        fetched = await cluster.get(WORKS, "env", namespace="default")
    assert fetched["metadata"]["uid"] == created["metadata"]["uid"]
    assert configuration.proxy is None

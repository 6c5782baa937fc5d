"""The fake API server's discovery documents and Namespaces, read with kubernetes-asyncio.

kubernetes-asyncio's models check the fields the real server always sends (``name``,
``singularName``, ``namespaced``, ``kind``, ``verbs``, ``groupVersion`` …), so decoding
the answers with them is the faithfulness check; kopf scans these documents to find the
resources it serves.
"""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from support.kube import FakeKube
from support.kube.resources import NAMESPACES

pytestmark = pytest.mark.anyio


async def test_api_lists_the_core_version(api_client: client.ApiClient) -> None:
    versions = await client.CoreApi(api_client).get_api_versions()
    assert versions.kind == "APIVersions"
    assert versions.versions == ["v1"]


async def test_apis_lists_every_served_group_with_its_preferred_version(
    api_client: client.ApiClient,
) -> None:
    groups = await client.ApisApi(api_client).get_api_versions()
    by_name = {g.name: g for g in groups.groups}
    assert set(by_name) == {"batch", "brokkr.io", "coordination.k8s.io"}
    batch = by_name["batch"]
    assert [v.group_version for v in batch.versions] == ["batch/v1"]
    assert batch.preferred_version.version == "v1"
    assert by_name["brokkr.io"].preferred_version.group_version == "brokkr.io/v1alpha1"


async def test_a_group_answers_its_versions(api_client: client.ApiClient) -> None:
    group = await client.BatchApi(api_client).get_api_group()
    assert group.kind == "APIGroup"
    assert group.name == "batch"
    assert group.preferred_version.group_version == "batch/v1"


async def test_core_v1_lists_pods_events_and_the_status_subresource(
    api_client: client.ApiClient,
) -> None:
    found = await client.CoreV1Api(api_client).get_api_resources()
    assert found.group_version == "v1"
    by_name = {r.name: r for r in found.resources}
    assert set(by_name) == {"events", "pods", "pods/status"}
    pods = by_name["pods"]
    assert (pods.kind, pods.singular_name, pods.namespaced) == ("Pod", "pod", True)
    assert pods.short_names == ["po"]
    assert set(pods.verbs) == {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert sorted(by_name["pods/status"].verbs) == ["get", "patch", "update"]


async def test_the_work_crd_is_discovered_with_its_names_and_status(
    api_client: client.ApiClient,
) -> None:
    found = await client.CustomObjectsApi(api_client).get_api_resources("brokkr.io", "v1alpha1")
    assert found.group_version == "brokkr.io/v1alpha1"
    by_name = {r.name: r for r in found.resources}
    assert set(by_name) == {"works", "works/status"}
    works = by_name["works"]
    assert (works.kind, works.singular_name, works.namespaced) == ("Work", "work", True)
    assert works.categories == ["workqueue"]
    assert by_name["works/status"].singular_name == ""


async def test_batch_v1_lists_jobs(api_client: client.ApiClient) -> None:
    found = await client.BatchV1Api(api_client).get_api_resources()
    assert [r.name for r in found.resources] == ["jobs", "jobs/status"]


async def test_an_unserved_group_version_is_404(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    with pytest.raises(ApiException) as raised:
        await client.CustomObjectsApi(api_client).get_api_resources("brokkr.io", "v9")
    assert raised.value.status == 404
    with pytest.raises(ApiException) as raised:
        await client.AppsApi(api_client).get_api_group()
    assert raised.value.status == 404
    record = fake_kube.requests[-1]
    assert (record.path, record.verb, record.status) == ("/apis/apps/", None, 404)


async def test_discovery_requests_are_logged_without_a_verb(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    await client.CoreApi(api_client).get_api_versions()
    record = fake_kube.requests[-1]
    assert (record.method, record.path, record.verb, record.status) == ("GET", "/api/", None, 200)


async def test_namespaces_are_not_served_unless_registered(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as raised:
        await core.list_namespace()
    assert raised.value.status == 404
    fake_kube.register(NAMESPACES)
    await core.create_namespace({"metadata": {"name": "team-a"}})
    names = [ns.metadata.name for ns in (await core.list_namespace()).items]
    assert names == ["team-a"]
    found = await core.get_api_resources()
    namespaces = next(r for r in found.resources if r.name == "namespaces")
    assert (namespaces.namespaced, namespaces.short_names) == (False, ["ns"])


async def test_cluster_scoped_and_namespaced_objects_list_together(
    api_client: client.ApiClient, fake_kube: FakeKube
) -> None:
    fake_kube.register(NAMESPACES)
    core = client.CoreV1Api(api_client)
    await core.create_namespace({"metadata": {"name": "default"}})
    for name in ("b", "a"):
        await core.create_namespaced_event(
            "default",
            {"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "p"}},
        )
    listed = await core.list_event_for_all_namespaces()
    assert [e.metadata.name for e in listed.items] == ["a", "b"]
    assert [ns["metadata"]["name"] for ns in fake_kube.objects("namespaces")] == ["default"]

"""Pytest fixtures for the fake API server and clients connected to it.

Import them into a conftest.py (pytest only honours ``pytest_plugins`` in the rootdir
conftest)::

    from support.kube.fixtures import api_client, cluster, fake_kube, kubeconfig

``fake_kube``: a running ``FakeKube`` (Work from ``deploy/crds/work.yaml``, Jobs, Leases,
Pods, Events, Namespaces, CRDs) on 127.0.0.1 and a random port; the test fails if the fake
itself raised an unexpected exception.  ``kubeconfig``: a kubeconfig file for it (context
``fake``, namespace ``default``).  ``api_client``: a raw kubernetes-asyncio ``ApiClient``
configured from that file.  ``cluster``: the adapter's ``KubernetesClusterClient``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from workqueue_kubernetes import KubernetesClusterClient, load_configuration, open_cluster_client

from .server import FakeKube

__all__ = ["api_client", "cluster", "fake_kube", "kubeconfig"]


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as kube:
        yield kube
    assert kube.internal_errors == [], f"the fake API server failed: {kube.internal_errors!r}"


@pytest.fixture
def kubeconfig(fake_kube: FakeKube, tmp_path: Path) -> Path:
    return fake_kube.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A real kubernetes-asyncio ApiClient configured from the fake's kubeconfig file."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[KubernetesClusterClient]:
    """The adapter's ClusterClient, configured from the fake's kubeconfig file."""
    configuration = await load_configuration(str(kubeconfig), "fake", in_cluster=False)
    async with open_cluster_client(configuration) as cluster_client:
        yield cluster_client

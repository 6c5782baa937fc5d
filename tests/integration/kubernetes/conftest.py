"""Fixtures for the Kubernetes tests: the fake API server and real kubernetes-asyncio clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from support.kube.fixtures import fake_kube, kubeconfig
from workqueue_kubernetes import KubernetesClusterClient, load_configuration, open_cluster_client

__all__ = ["api_client", "cluster", "fake_kube", "kubeconfig"]


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
    async with open_cluster_client(configuration) as client_:
        yield client_

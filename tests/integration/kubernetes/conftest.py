"""Fixtures for the Kubernetes tests: the fake API server and real kubernetes-asyncio clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from support.kube.fixtures import fake_kube, kubeconfig

__all__ = ["api_client", "fake_kube", "kubeconfig"]


@pytest.fixture
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    """A real kubernetes-asyncio ApiClient configured from the fake's kubeconfig file."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        yield api

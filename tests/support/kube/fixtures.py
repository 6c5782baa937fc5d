"""Pytest fixtures for the fake API server.

Enable them in a test module or conftest with
``pytest_plugins = ["support.kube.fixtures"]`` (pytest requires that in the rootdir
conftest) or import them by name: ``from support.kube.fixtures import fake_kube, kubeconfig``.

``fake_kube``: a running ``FakeKube`` (Work from ``deploy/crds/work.yaml``, Jobs, Leases,
Pods, Events) on 127.0.0.1 and a random port.  ``kubeconfig``: a kubeconfig file for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .server import FakeKube


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as kube:
        yield kube


@pytest.fixture
def kubeconfig(fake_kube: FakeKube, tmp_path: Path) -> Path:
    return fake_kube.write_kubeconfig(tmp_path / "kubeconfig")

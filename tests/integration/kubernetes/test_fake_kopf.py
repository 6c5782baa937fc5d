"""kopf (the benchmark's anchor operator) runs against the fake API server.

Runs only where kopf is installed (the benchmark's environment); it checks the discovery,
namespace and CRD listings kopf needs, and that its patches reach the Work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from support.kube import FakeKube

kopf = pytest.importorskip("kopf")

pytestmark = pytest.mark.anyio


async def test_a_kopf_operator_reconciles_works_on_the_fake(fake_kube: FakeKube) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> Any:
        return kopf.ConnectionInfo(server=fake_kube.url, token="fake", scheme="Bearer")

    @kopf.on.create("brokkr.io", "v1alpha1", "works", registry=registry)
    def created(patch: Any, **_: Any) -> None:
        patch.status["phase"] = "Running"

    stop = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(registry=registry, standalone=True, namespaces=["default"], stop_flag=stop)
    )
    try:
        works = fake_kube.resource("works")
        fake_kube.create_object(
            works,
            "default",
            {
                "metadata": {"name": "a"},
                "spec": {
                    "workType": "job",
                    "template": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "a"},
                    },
                },
            },
        )
        with anyio.fail_after(20):
            while (fake_kube.get("works", "default", "a") or {}).get("status") is None:
                await anyio.sleep(0.05)
    finally:
        stop.set()
        with anyio.fail_after(20):
            await operator
    work = fake_kube.get("works", "default", "a")
    assert work is not None
    assert work["status"] == {"phase": "Running"}
    assert fake_kube.count("patch", "works", subresource="status") >= 1
    assert all(
        r.content_type == "application/merge-patch+json"
        for r in fake_kube.requests
        if r.verb == "patch"
    )

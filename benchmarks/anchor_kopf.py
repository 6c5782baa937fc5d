"""The anchor: a minimal kopf operator doing the Work controller's job for ``job`` Works.

Written as a kopf user would: ``@kopf.on.create`` on Works creates the Job (the same name,
``<work>-0``, the same labels and a controlling ``ownerReference`` via ``kopf.adopt``)
with kubernetes-asyncio; ``@kopf.on.event`` on the Jobs it made copies a terminal Job
condition into its Work's status (one merge patch of ``/status``: ``phase``,
``completionTime``, ``message``, a ``TemplateSucceeded`` condition). No retries, no
``Running`` phase, no spec changes: only the happy path the benchmark drives, which makes
the anchor do less than ours.

kopf runs as ``kopf.operator`` (in a process of its own by default, like ours, or on the
fake's event loop with ``--in-process``); standalone (no peering), namespace-scoped;
login by a ``@kopf.on.login`` handler returning the fake's address and token. Its
defaults are kept except posting of Kubernetes Events (disabled: it would add a create
per handler run, which ours does not do either) and its own log output (quietened).
kopf's state bookkeeping is its default: annotations on the Work
(``kopf.zalando.org/last-handled-configuration``) and progress in
annotations/``status.kopf``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from benchmarks._kube import FakeKube
from workqueue_core.work.reconcile_labels import (
    INSTANCE_LABEL,
    WORK_LABEL,
    WORK_UID_LABEL,
    instance_name,
)

GROUP, VERSION, PLURAL = "brokkr.io", "v1alpha1", "works"
SUCCESS = ("Complete", "SuccessCriteriaMet")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminal(job: Any) -> tuple[str, str, str] | None:
    """(phase, reason, message) of a finished Job, or None."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded", condition.get("reason", ""), condition.get("message", "")
        if condition.get("type") == "Failed":
            return "Failed", condition.get("reason", ""), condition.get("message", "")
    return None


def build_registry(kubeconfig: Path, url: str, namespace: str) -> kopf.OperatorRegistry:
    """The operator's handlers, in a registry of their own (not kopf's global one)."""
    registry = kopf.OperatorRegistry()
    api: dict[str, client.ApiClient] = {}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, token="fake-token", default_namespace=namespace)

    @kopf.on.startup(registry=registry)
    async def connect(**_: Any) -> None:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
        api["client"] = client.ApiClient(configuration)

    @kopf.on.cleanup(registry=registry)
    async def disconnect(**_: Any) -> None:
        if "client" in api:
            await api.pop("client").close()

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    async def create_job(body: kopf.Body, name: str, namespace: str, uid: str, **_: Any) -> None:
        job = copy.deepcopy(dict(body["spec"]["template"]))
        template_metadata = job.get("metadata") or {}
        job["metadata"] = {
            "name": instance_name(name, 0),
            "labels": {WORK_LABEL: name, WORK_UID_LABEL: uid, INSTANCE_LABEL: "0"},
            "annotations": dict(template_metadata.get("annotations") or {}),
        }
        job["spec"]["backoffLimit"] = 0
        kopf.adopt(job, owner=body)
        try:
            await client.BatchV1Api(api["client"]).create_namespaced_job(namespace, job)
        except ApiException as error:
            if error.status != 409:  # AlreadyExists: created before a restart
                raise

    @kopf.on.event("batch", "v1", "jobs", labels={WORK_UID_LABEL: kopf.PRESENT}, registry=registry)
    async def copy_outcome(body: kopf.Body, namespace: str, type: str, **_: Any) -> None:
        outcome = _terminal(body) if type in ("ADDED", "MODIFIED", None) else None
        owner = next(
            (r for r in body.metadata.get("ownerReferences", ()) if r.get("controller")), None
        )
        if outcome is None or owner is None:
            return
        phase, reason, message = outcome
        now = _now()
        status = {
            "phase": phase,
            "completionTime": now,
            "message": message,
            "conditions": [
                {
                    "type": "TemplateSucceeded",
                    "status": "True" if phase == "Succeeded" else "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                }
            ],
        }
        await client.CustomObjectsApi(api["client"]).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            owner["name"],
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    return registry


def settings() -> kopf.OperatorSettings:
    """kopf's defaults, without posting Events."""
    chosen = kopf.OperatorSettings()
    chosen.posting.enabled = False
    return chosen


async def run_kopf(
    fake: FakeKube, kubeconfig: Path, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """Run the operator against ``fake`` until ``stop``; ``ready`` once kopf is up."""
    await run_kopf_at(fake.url, kubeconfig, ready, stop)


async def run_kopf_at(
    url: str, kubeconfig: Path, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    """Run the operator against the API server at ``url`` until ``stop``."""
    logging.getLogger("kopf").setLevel(logging.ERROR)
    await kopf.operator(
        registry=build_registry(kubeconfig, url, "default"),
        settings=settings(),
        standalone=True,
        namespaces=["default"],
        ready_flag=ready,
        stop_flag=stop,
    )

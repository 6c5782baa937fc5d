"""A fake Kubernetes API server for tests: ``FakeKube`` over real HTTP on 127.0.0.1.

See ``server`` (the API), ``jobs`` (the simulated Job controller), ``shipwright`` (the
simulated Shipwright Build and BuildRun controller), ``resources`` (what it
serves), ``fixtures`` (``fake_kube``, ``kubeconfig``) and ``docs/kubernetes.md``.
"""

from .jobs import DELAY_ANNOTATION, OUTCOME_ANNOTATION, JobController
from .resources import (
    CRDS,
    DEFAULT_RESOURCES,
    EVENTS,
    JOBS,
    LEASES,
    NAMESPACES,
    PODS,
    WORK_CRD,
    Resource,
    resource_from_crd,
    works_resource,
)
from .schema import KUBERNETES_VERSION, BuiltinSchema, CrdSchema, load_crd
from .server import ApiError, FakeKube, RequestRecord
from .shipwright import SHIPWRIGHT_CRDS, ShipwrightController, serve_shipwright

__all__ = [
    "CRDS",
    "DEFAULT_RESOURCES",
    "DELAY_ANNOTATION",
    "EVENTS",
    "JOBS",
    "KUBERNETES_VERSION",
    "LEASES",
    "NAMESPACES",
    "OUTCOME_ANNOTATION",
    "PODS",
    "SHIPWRIGHT_CRDS",
    "WORK_CRD",
    "ApiError",
    "BuiltinSchema",
    "CrdSchema",
    "FakeKube",
    "JobController",
    "RequestRecord",
    "Resource",
    "ShipwrightController",
    "load_crd",
    "resource_from_crd",
    "serve_shipwright",
    "works_resource",
]

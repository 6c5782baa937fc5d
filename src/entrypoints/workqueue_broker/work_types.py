"""The work types the broker knows: their specs are checked at submit.

``build`` (Shipwright, ``workqueue_shipwright``) and ``job`` (a batch/v1 Job,
``workqueue_kubernetes``); any other work type's spec stays opaque text.
"""

from __future__ import annotations

from workqueue_core.work.registry import WorkTypes
from workqueue_core.work.specs import SpecValidator, spec_validator
from workqueue_kubernetes.job import JobWorkType
from workqueue_shipwright import BuildWorkType

__all__ = ["broker_spec_validator", "broker_work_types"]


def broker_work_types() -> WorkTypes:
    """The registry of the broker's Kubernetes work types."""
    return WorkTypes([BuildWorkType(), JobWorkType()])


def broker_spec_validator() -> SpecValidator:
    """What ``BrokerService(spec_validator=...)`` takes in the broker."""
    return spec_validator(broker_work_types())

"""``ClusterClient``: the Kubernetes API as the controller and the agent use it.

The Protocol and its errors are defined with the Kubernetes adapter
(``workqueue_kubernetes``); the core holds the pieces the work types and the reconcile
decision share: which kind of resource an object is.
"""

from __future__ import annotations

import attrs

__all__ = ["ResourceKind"]


@attrs.frozen
class ResourceKind:
    """A kind of Kubernetes resource, as its REST path needs it."""

    group: str
    """API group; ``""`` for the core group (``v1``)."""
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

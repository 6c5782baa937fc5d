"""Shipwright adapter: the ``build`` work type (a Shipwright Build and BuildRun)."""

from workqueue_shipwright.build import BuildWorkType

__all__ = ["BuildWorkType"]

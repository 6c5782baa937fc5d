"""Fixtures for the Kubernetes tests: the fake API server and real clients connected to it."""

from __future__ import annotations

from support.kube.fixtures import api_client, cluster, fake_kube, kubeconfig

__all__ = ["api_client", "cluster", "fake_kube", "kubeconfig"]

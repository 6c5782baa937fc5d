"""Kubernetes adapter: the ``job`` work type (a batch/v1 Job) and the cluster client."""

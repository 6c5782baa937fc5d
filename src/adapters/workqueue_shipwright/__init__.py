"""Shipwright adapter: the ``build`` work type (a Shipwright Build and BuildRun)."""

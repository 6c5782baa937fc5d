"""Work specs: safe YAML loading, the ``Work`` custom resource, generic template checks and
the registry of work types (each implemented in its adapter)."""

"""The ``workqueue`` command."""

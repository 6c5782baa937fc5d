"""Test support packages (importable as ``support`` because ``tests/`` is on sys.path)."""

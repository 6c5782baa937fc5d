"""The in-process executor: runs work with Python handlers (built in issue 5)."""

"""The in-process executor: a ``Worker`` claims work from the agent side of the broker and
runs it through runners (Python handlers today)."""

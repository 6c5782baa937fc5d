"""In-memory store: the reference implementation of the store ports."""

from workqueue_memory.store import MemoryStore

__all__ = ["MemoryStore"]

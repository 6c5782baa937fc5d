"""workqueue: the pure domain core."""

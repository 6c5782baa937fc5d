"""SQLite store: the broker's embedded default."""

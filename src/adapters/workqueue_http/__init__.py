"""The broker REST API (server) and the broker client."""

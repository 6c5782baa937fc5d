"""The broker process: store + HTTP API + maintenance."""

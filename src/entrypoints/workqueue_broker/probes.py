"""The health port of a worker process (controller, agent): ``/healthz``, ``/readyz`` and,
when given a registry, ``/metrics``; a small ASGI app and the uvicorn server around it.

* ``/healthz``: 200 while the process's event loop answers;
* ``/readyz``: 200 while ``ready()`` is true, else 503;
* ``/metrics``: Prometheus text of ``registry`` (404 without one).

The broker serves its own probes on its API port; this module is for the processes that
have no HTTP API.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest

__all__ = ["HealthApp", "HealthServer", "health_server", "listen"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HealthApp:
    """The ASGI application of the health port."""

    def __init__(
        self, ready: Callable[[], bool], registry: CollectorRegistry | None = None
    ) -> None:
        self._ready = ready
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n")
        elif path == "/healthz":
            await _answer(send, 200, b"ok\n")
        elif path == "/readyz":
            ready = self._ready()
            await _answer(send, 200 if ready else 503, b"ready\n" if ready else b"not ready\n")
        elif path == "/metrics" and self._registry is not None:
            await _answer(
                send,
                200,
                generate_latest(self._registry),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        else:
            await _answer(send, 404, b"not found\n")


class HealthServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the process handles signals itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_server(app: HealthApp, host: str, port: int) -> HealthServer:
    """The server of ``app`` on ``host:port``: no access log, no lifespan."""
    return HealthServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (``OSError`` when it cannot), for
    ``HealthServer.serve(sockets=[…])``: a port in use is the caller's error to report, not
    uvicorn's ``sys.exit``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


async def _answer(
    send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Fixtures: a real broker on uvicorn per test, and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from integration.http.support import ADMIN_TOKEN, Broker, running_broker, server_errors
from workqueue_http.client import BrokerClient


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh broker; the test fails if it answered any request with a 5xx."""
    with running_broker() as running:
        yield running
        assert server_errors(running) == []


@pytest.fixture
async def admin(broker: Broker) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, ADMIN_TOKEN, retries=0) as client:
        yield client


@pytest.fixture
async def http(broker: Broker) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client without credentials."""
    async with httpx.AsyncClient(base_url=broker.url, timeout=35) as client:
        yield client

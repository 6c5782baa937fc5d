"""Completion callbacks over HTTP: the poster and the JSON body.

``HttpxCallbackPoster`` implements the core's ``CallbackPoster``: one POST, no
redirect followed, the response body never read (only the status counts), one
deadline for the whole exchange, and no proxy or ``.netrc`` settings taken from
the environment unless asked. Credentials in the URL are sent as Basic auth, so
they stay out of httpx's request log; its error messages never contain the URL's
credentials or query. (httpx logs each request's URL, query included, at INFO on
the ``httpx`` logger: a process that posts callbacks should keep that logger at
WARNING, as the broker does.) ``encode_record`` is the body: the record exactly as
``GET /api/v1/work/{id}`` returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import httpx
import msgspec

from workqueue_core.domain.callbacks import CallbackTransportError
from workqueue_core.domain.models import ExecutionRecord
from workqueue_http import wire
from workqueue_http.wire import redact_url

__all__ = ["HttpxCallbackPoster", "encode_record", "redact_url"]


def encode_record(record: ExecutionRecord) -> bytes:
    """The callback body: the record in the wire format of ``GET /work/{id}``."""
    return msgspec.json.encode(wire.view_out(record))


def _secrets_of(url: str) -> list[str]:
    """The parts of ``url`` an error message must not repeat, longest first."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url, parts.netloc if "@" in parts.netloc else "", parts.query, parts.fragment]
    found += [parts.username or "", parts.password or ""]
    return sorted((s for s in found if s), key=len, reverse=True)


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL without its ``user:password@`` and, if it had them, Basic auth with them.

    httpx logs request URLs; taking the credentials out of the URL keeps them out of
    those logs (the receiver still gets them, as an ``Authorization`` header).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


def describe(error: BaseException, url: str) -> str:
    """A one-line account of a transport error, with the URL's secrets removed."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    for secret in _secrets_of(url):
        text = text.replace(secret, redact_url(url) if secret == url else "***")
    return text


class HttpxCallbackPoster:
    """POSTs callbacks with one shared ``httpx.AsyncClient``; close it with ``aclose``."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, trust_env: bool = False) -> None:
        self._client = client or httpx.AsyncClient(
            follow_redirects=False, trust_env=trust_env, http2=False
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """POST and return the status; ``CallbackTransportError`` when none came back."""
        try:
            target, auth = _split_credentials(url)
            with anyio.fail_after(timeout):
                async with self._client.stream(
                    "POST",
                    target,
                    content=body,
                    headers=dict(headers),
                    auth=auth,
                    timeout=timeout,
                    follow_redirects=False,
                ) as response:
                    return response.status_code  # the body is never read
        except TimeoutError:
            raise CallbackTransportError(f"no answer within {timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
            raise CallbackTransportError(describe(error, url)) from None

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def __aenter__(self) -> HttpxCallbackPoster:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

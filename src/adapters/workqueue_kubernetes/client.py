"""``ClusterClient`` on kubernetes-asyncio, and loading its configuration.

Requests go through ``ApiClient.call_api`` with paths built from a ``ResourceKind``, so
any resource kind works without a generated API class; the ApiClient still does
authentication, TLS, serialisation and connection pooling.

Patches are sent as ``application/merge-patch+json`` explicitly.  (kubernetes-asyncio 36's
``CustomObjectsApi.patch_*`` picks the first content type it lists,
``application/json-patch+json``, for a dict body, which the server rejects; those calls
need ``_content_type="application/merge-patch+json"``.)  Writes send
``fieldValidation=Strict`` by default so that a field the schema does not know is an
error instead of being silently pruned.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import aiohttp
import attrs
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from workqueue_kubernetes.port import (
    AlreadyExists,
    Cause,
    ClusterClient,
    ClusterError,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    ObjectList,
    Preconditions,
    PropagationPolicy,
    ResourceKind,
    Unavailable,
    WatchEvent,
    WatchEventType,
)

__all__ = [
    "KubernetesClusterClient",
    "error_from_status",
    "load_configuration",
    "open_cluster_client",
]

MERGE_PATCH: Final = "application/merge-patch+json"
_RESPONSE_TYPES: Final = {200: "object", 201: "object", 202: "object"}
_IN_CLUSTER_HOST: Final = "KUBERNETES_SERVICE_HOST"


async def load_configuration(
    kubeconfig: str | None = None,
    context: str | None = None,
    in_cluster: bool | None = None,
) -> k8s_client.Configuration:
    """A client configuration from the pod's service account or a kubeconfig file.

    ``in_cluster=None`` chooses: the service account when running in a pod
    (``KUBERNETES_SERVICE_HOST`` set) and neither ``kubeconfig`` nor ``context`` is given,
    else the kubeconfig (``kubeconfig``, or ``$KUBECONFIG``, or ``~/.kube/config``) with
    ``context`` or its current context.
    """
    configuration = k8s_client.Configuration()
    if in_cluster is None:
        in_cluster = kubeconfig is None and context is None and _IN_CLUSTER_HOST in os.environ
    if in_cluster:
        if kubeconfig is not None or context is not None:
            raise ValueError("in-cluster configuration takes no kubeconfig or context")
        k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        await k8s_config.load_kube_config(
            config_file=kubeconfig,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``NO_PROXY``, …) names for ``url``."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme or "https")


@asynccontextmanager
async def open_cluster_client(
    configuration: k8s_client.Configuration, *, field_validation: str = "Strict"
) -> AsyncIterator[KubernetesClusterClient]:
    """A ``KubernetesClusterClient`` owning its ApiClient (closed on exit).

    kubernetes-asyncio's HTTP session reads the environment on every request
    (``trust_env``: a netrc lookup and a proxy lookup, each in a worker thread); this
    client reads the environment's proxy for the API server once, here, unless the
    configuration names one, and sends every request without those lookups.
    """
    if configuration.proxy is None:
        configuration.proxy = environment_proxy(str(configuration.host))
    async with k8s_client.ApiClient(configuration) as api:
        rest = api.rest_client
        session = rest.pool_manager
        connector = session.connector
        session.detach()  # the connector (its pool and TLS context) moves to the new one
        rest.pool_manager = aiohttp.ClientSession(
            connector=connector, trust_env=False, read_bufsize=2**21
        )
        yield KubernetesClusterClient(api, field_validation=field_validation)


def _status_body(body: Any) -> Mapping[str, Any]:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {"message": body}
    return body if isinstance(body, Mapping) else {}


def error_from_status(status: int, body: Any) -> ClusterError:
    """The port's error for an HTTP status and a ``Status`` body (dict, str or bytes)."""
    parsed = _status_body(body)
    reason = str(parsed.get("reason") or "")
    message = str(parsed.get("message") or f"HTTP {status}")
    if status == 404:
        return NotFound(message, status=status, reason=reason)
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(message, status=status, reason=reason)
        return Conflict(message, status=status, reason=reason)
    if status == 410:
        return Gone(message, status=status, reason=reason)
    if status == 422:
        details = parsed.get("details") or {}
        causes = tuple(
            Cause(str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", "")))
            for c in details.get("causes") or ()
            if isinstance(c, Mapping)
        )
        return Invalid(message, status=status, reason=reason, causes=causes)
    if status == 0 or status == 429 or status >= 500:
        return Unavailable(message, status=status, reason=reason)
    return ClusterError(message, status=status, reason=reason)


@attrs.frozen
class KubernetesClusterClient:
    """The ``ClusterClient`` port on a kubernetes-asyncio ``ApiClient`` (not owned).

    ``request_timeout`` bounds connecting and each read of a plain request (seconds);
    a watch's read bound is its ``timeout_seconds`` plus ``watch_read_margin``.
    """

    api: k8s_client.ApiClient
    field_validation: str = "Strict"
    request_timeout: float = 30.0
    watch_read_margin: float = 30.0

    # --- paths and calls ---------------------------------------------------------

    @staticmethod
    def path(
        kind: ResourceKind,
        namespace: str | None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of a collection, an object or its subresource."""
        parts = ["/api/v1" if not kind.group else f"/apis/{kind.group}/{kind.version}"]
        if kind.namespaced and namespace is not None:
            parts.append(f"/namespaces/{namespace}")
        parts.append(f"/{kind.plural}")
        if name is not None:
            parts.append(f"/{name}")
            if subresource is not None:
                parts.append(f"/{subresource}")
        return "".join(parts)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            return await self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map=_RESPONSE_TYPES,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=aiohttp.ClientTimeout(
                    connect=self.request_timeout, sock_read=self.request_timeout
                ),
            )
        except ApiException as exc:
            raise error_from_status(int(exc.status or 0), exc.body or exc.reason) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise Unavailable(f"cannot reach the API server: {exc!r}") from exc

    def _write_query(self) -> list[tuple[str, str]]:
        return [("fieldValidation", self.field_validation)] if self.field_validation else []

    @staticmethod
    def _namespace(kind: ResourceKind, obj: Mapping[str, Any], namespace: str | None) -> str | None:
        if not kind.namespaced:
            return None
        chosen = namespace or (obj.get("metadata") or {}).get("namespace")
        if not chosen:
            raise ValueError(f"a {kind.kind} needs a namespace")
        return str(chosen)

    @staticmethod
    def _name(obj: Mapping[str, Any]) -> str:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise ValueError("the object has no metadata.name")
        return str(name)

    @staticmethod
    def _object(answer: Any) -> Mapping[str, Any]:
        if not isinstance(answer, Mapping):
            raise ClusterError(f"expected an object, the server answered {answer!r}")
        return answer

    # --- the port ------------------------------------------------------------------

    async def create(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        namespace = self._namespace(kind, obj, namespace)
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        answer = await self._call(
            "POST", self.path(kind, namespace), query=self._write_query(), body=body
        )
        return self._object(answer)

    async def get(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        return self._object(await self._call("GET", self.path(kind, namespace, name)))

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            query = [("limit", str(page_size))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if token:
                query.append(("continue", token))
            answer = self._object(await self._call("GET", self.path(kind, namespace), query=query))
            items.extend(answer.get("items") or ())
            metadata = answer.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ObjectList(tuple(items), str(metadata.get("resourceVersion") or ""))

    async def replace(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        return await self._put(kind, obj, namespace, None)

    async def replace_status(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        return await self._put(kind, obj, namespace, "status")

    async def _put(
        self,
        kind: ResourceKind,
        obj: Mapping[str, Any],
        namespace: str | None,
        subresource: str | None,
    ) -> Mapping[str, Any]:
        namespace = self._namespace(kind, obj, namespace)
        body = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
        path = self.path(kind, namespace, self._name(obj), subresource)
        return self._object(await self._call("PUT", path, query=self._write_query(), body=body))

    async def merge_patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Mapping[str, Any]:
        return await self._patch(kind, name, patch, namespace, resource_version, None)

    async def patch_status(
        self,
        kind: ResourceKind,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Mapping[str, Any]:
        return await self._patch(kind, name, patch, namespace, resource_version, "status")

    async def _patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None,
        resource_version: str | None,
        subresource: str | None,
    ) -> Mapping[str, Any]:
        body = dict(patch)
        if resource_version is not None:
            metadata = dict(body.get("metadata") or {})
            metadata["resourceVersion"] = resource_version
            body["metadata"] = metadata
        answer = await self._call(
            "PATCH",
            self.path(kind, namespace, name, subresource),
            query=self._write_query(),
            body=body,
            content_type=MERGE_PATCH,
        )
        return self._object(answer)

    async def delete(
        self,
        kind: ResourceKind,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy = PropagationPolicy.BACKGROUND,
        preconditions: Preconditions | None = None,
    ) -> Mapping[str, Any] | None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation_policy.value,
        }
        if preconditions is not None:
            given = {"uid": preconditions.uid, "resourceVersion": preconditions.resource_version}
            body["preconditions"] = {k: v for k, v in given.items() if v is not None}
        answer = self._object(
            await self._call("DELETE", self.path(kind, namespace, name), body=body)
        )
        if answer.get("kind") == "Status":
            return None
        return answer

    async def watch(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        query = [("watch", "true")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if label_selector:
            query.append(("labelSelector", label_selector))
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", str(timeout_seconds)))
        read_bound = None if timeout_seconds is None else timeout_seconds + self.watch_read_margin
        try:
            response = await self.api.call_api(
                self.path(kind, namespace),
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(
                    connect=self.request_timeout,
                    sock_connect=self.request_timeout,
                    sock_read=read_bound,
                ),
            )
        except ApiException as exc:
            raise error_from_status(int(exc.status or 0), exc.body or exc.reason) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise Unavailable(f"cannot reach the API server: {exc!r}") from exc
        try:
            if response.status != 200:
                raise error_from_status(response.status, await response.read())
            while True:
                try:
                    line = await response.content.readline()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise Unavailable(f"the watch broke: {exc!r}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                yield _watch_event(line)
        finally:
            response.close()


def _watch_event(line: bytes) -> WatchEvent:
    try:
        data = json.loads(line)
        kind, obj = data["type"], data["object"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"malformed watch event: {line[:200]!r}") from exc
    if kind == "ERROR":
        raise error_from_status(int(obj.get("code") or 0), obj)
    try:
        event_type = WatchEventType(kind)
    except ValueError as exc:
        raise ClusterError(f"unknown watch event type {kind!r}") from exc
    return WatchEvent(event_type, obj)


def _conforms(cluster: KubernetesClusterClient) -> ClusterClient:
    """Lets mypy check that ``KubernetesClusterClient`` implements the port."""
    return cluster

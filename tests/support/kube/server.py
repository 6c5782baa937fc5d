"""An HTTP fake of the Kubernetes API server, faithful where clients commonly trip.

Why not kmock's ``KubernetesEmulator``: kmock 0.8 stores objects as plain dicts merged on
update, with no ``resourceVersion`` (its lists answer ``"..."``), no conflicts, no label
or field selectors, no watch ``resourceVersion``/bookmarks/410, no status subresource, no
``generation``, no validation and no garbage collection; its ``Server`` can be entered
only once, so it cannot go down and come back on the same port with the same state.
Those are exactly the behaviours this fake exists for, so it is a small aiohttp server of
its own (aiohttp is also what kmock and kubernetes-asyncio use).

What it reproduces (``docs/kubernetes.md`` has the full list):

* objects: ``metadata.resourceVersion`` from one global counter, ``uid``,
  ``creationTimestamp``, ``generation`` (1 on create, bumped when anything outside
  ``metadata`` and ``status`` changes); an update that changes nothing keeps the
  ``resourceVersion`` and sends no watch event, as the real server does;
* errors as ``Status`` bodies: 404 ``NotFound``, 409 ``AlreadyExists`` (create of an
  existing name), 409 ``Conflict`` (stale ``resourceVersion`` or failed delete
  precondition), 422 ``Invalid`` with ``details.causes``, 400 ``BadRequest``,
  410 ``Expired``;
* ``/status``: only ``status`` is taken from a write there; writes to the main resource
  keep the stored ``status``; create drops ``status`` (resources with the subresource);
* PUT, PATCH as ``application/merge-patch+json``, ``application/json-patch+json`` and
  ``application/strategic-merge-patch+json`` (applied as a merge patch: lists are
  replaced, not merged by key - documented deviation), DELETE with
  ``propagationPolicy`` and ``preconditions``; finalizers hold an object with
  ``deletionTimestamp`` until they are removed;
* list with ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``,
  ``!key``), ``fieldSelector`` (``metadata.name``, ``metadata.namespace``), ``limit`` and
  ``continue``, namespaced and all-namespaces paths;
* watch: ``resourceVersion`` unset or ``"0"`` sends ``ADDED`` for every current object
  first; a later version replays the history after it; selectors (an object that stops
  matching is sent as ``DELETED``, one that starts matching as ``ADDED``),
  ``timeoutSeconds``, ``BOOKMARK`` events only with ``allowWatchBookmarks=true``;
* too-old versions (older than the window ``compact()`` cuts): a watch *start* answers
  HTTP 200 whose first event is ``ERROR`` with a 410 ``Expired`` Status (the watch
  cache's behaviour); ``expire_watches()`` sends that event into established watches;
  a list answers HTTP 410 for an expired ``continue`` token or
  ``resourceVersionMatch=Exact`` below the window (a plain list with an old
  ``resourceVersion`` is served, as "not older than" allows);
* owner-reference garbage collection in the background (``gc_delay``), the default
  propagation being ``Orphan`` for batch/v1 Jobs and ``Background`` otherwise;
* validation of created and updated objects (``Resource.validator``), pruning unknown
  fields of custom resources or rejecting them with 400 under ``fieldValidation=Strict``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import yaml
from aiohttp import web

from .patch import PatchError, apply_json_patch, apply_merge_patch
from .resources import DEFAULT_RESOURCES, WORK_CRD, Resource, resource_from_crd
from .schema import Cause, load_crd
from .selectors import FieldSelector, LabelSelector, SelectorError

__all__ = ["ApiError", "FakeKube", "RequestRecord", "now_rfc3339"]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes it (second precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error answer: HTTP ``code`` with a ``Status`` body."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        """The ``Status`` object the real server sends."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@attrs.define
class RequestRecord:
    """One request as the fake saw it; ``verb`` is the Kubernetes verb.

    Verbs: get, list, watch, create, update, patch, delete, deletecollection (``None``
    for paths that are not resources).  Logged when the request arrives; ``status`` is
    the HTTP status answered (0 while in progress; 200 for a watch stream, even one that
    starts with an ERROR event).
    """

    method: str
    path: str
    query: Mapping[str, str]
    verb: str | None
    group: str | None
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    content_type: str | None
    status: int


@attrs.define
class _Fault:
    remaining: int
    status: int
    method: str | None
    path: str | None
    verb: str | None

    def matches(self, method: str, path: str, verb: str | None) -> bool:
        return (
            (self.method is None or self.method.upper() == method)
            and (self.path is None or self.path in path)
            and (self.verb is None or self.verb == verb)
        )


@attrs.frozen
class _Route:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


@attrs.define(eq=False)
class _Watcher:
    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[dict[str, Any] | None] = attrs.field(factory=asyncio.Queue)

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        metadata = obj.get("metadata") or {}
        return (
            (self.namespace is None or metadata.get("namespace") == self.namespace)
            and self.labels.matches(metadata.get("labels"))
            and self.fields.matches(obj)
        )

    def event(
        self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The event as this watcher sees it (selector transitions included), or None."""
        was, now = self.matches(old), self.matches(new)
        if kind == "MODIFIED" and was != now:
            kind = "ADDED" if now else "DELETED"
        elif not now:
            return None
        return {"type": kind, "object": new}  # stored objects are never changed in place

    def offer(self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
        """Queue the event, if this watcher sees it."""
        event = self.event(kind, old, new)
        if event is not None:
            self.queue.put_nowait(event)


def _int_query(query: Mapping[str, str], key: str) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"invalid {key} {value!r}") from None


class FakeKube:
    """The fake API server; use as ``async with FakeKube() as kube`` (see ``fixtures``).

    Tests reach the state directly (``get``, ``objects``), the request log (``requests``,
    ``count``) and the fault injection methods (``fail_next``, ``conflict_status_writes``,
    ``drop_watches_after``, ``latency``, ``go_down``/``come_up``/``down_for``,
    ``compact``, ``expire_watches``).  ``jobs`` is the simulated Job controller,
    ``shipwright`` the simulated Shipwright one (``shipwright.serve_shipwright``).
    """

    def __init__(
        self,
        resources: Iterable[Resource] | None = None,
        *,
        bookmark_interval: float = 0.5,
        gc_delay: float = 0.02,
    ) -> None:
        from .jobs import JobController
        from .shipwright import ShipwrightController

        self._resources: dict[tuple[str, str], Resource] = {}
        self.bookmark_interval = bookmark_interval
        self.gc_delay = gc_delay
        self.latency = 0.0
        """Seconds added before every answer."""
        self.requests: list[RequestRecord] = []
        self.internal_errors: list[Exception] = []
        """Unexpected exceptions in the fake's handlers (the ``fake_kube`` fixture fails on any)."""
        self._objects: dict[tuple[tuple[str, str], str | None, str], dict[str, Any]] = {}
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._history: list[
            tuple[int, tuple[str, str], str, Mapping[str, Any] | None, dict[str, Any]]
        ] = []
        self._compacted = 0
        self._watchers: set[_Watcher] = set()
        self._faults: list[_Fault] = []
        self._status_conflicts = 0
        self._drop_after: int | None = None
        self._stream_responses: set[web.StreamResponse] = set()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.jobs = JobController(self)
        self.shipwright = ShipwrightController(self)
        if resources is None:
            for resource in DEFAULT_RESOURCES:
                self.register(resource)
            self.register_crd(WORK_CRD, "v1alpha1")
        else:
            for resource in resources:
                self.register(resource)
        if ("", "namespaces") in self._resources:
            self.create_object(
                self._resources[("", "namespaces")], None, {"metadata": {"name": "default"}}
            )

    # --- lifecycle -------------------------------------------------------------

    def register(self, resource: Resource) -> None:
        """Serve ``resource`` (e.g. ``resource_from_crd(shipwright_build_crd)``)."""
        self._resources[resource.key] = resource

    def served(self, key: tuple[str, str]) -> Resource | None:
        """The resource served under ``(group, plural)``, if any."""
        return self._resources.get(key)

    def register_crd(self, crd: Path | Mapping[str, Any], version: str | None = None) -> Resource:
        """Serve the custom resource a CRD (file or manifest) defines, validated by its schema.

        ``version`` defaults to the CRD's storage version.  Example (Shipwright):
        ``kube.register_crd(UPSTREAM / "shipwright.io_builds.yaml", "v1beta1")``.
        """
        manifest = load_crd(crd) if isinstance(crd, Path) else crd
        return self.register_crd_resource(manifest, resource_from_crd(manifest, version))

    def register_crd_resource(self, manifest: Mapping[str, Any], resource: Resource) -> Resource:
        """``register_crd`` with the resource already made of ``manifest`` (a test that
        serves the same CRD many times makes it once)."""
        self.register(resource)
        crds = self._resources.get(("apiextensions.k8s.io", "customresourcedefinitions"))
        name = manifest["metadata"]["name"]
        if crds is not None and (crds.key, None, name) not in self._objects:
            self.create_object(crds, None, copy.deepcopy(dict(manifest)))
        return resource

    async def __aenter__(self) -> FakeKube:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._stop()

    async def _start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a watch whose client went away ends at once (not at its
        # next write), so its queue stops growing.
        runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        if not self._port:
            server = site._server
            assert server is not None
            self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runner = runner

    async def _stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        for response in list(self._stream_responses):
            transport = response._req.transport if response._req is not None else None
            if transport is not None:
                transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig file whose current context (``fake``) points at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the server (cancelled on exit)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- fault injection ---------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        method: str | None = None,
        path: str | None = None,
        verb: str | None = None,
    ) -> None:
        """The next ``count`` requests matching method, path substring and verb fail.

        The answer is HTTP ``status`` with a ``Status`` body (a watch too: it fails at
        its start, before any event).
        """
        self._faults.append(_Fault(count, status, method, path, verb))

    def conflict_status_writes(self, count: int) -> None:
        """A 409 storm: the next ``count`` writes to any ``/status`` answer 409 Conflict."""
        self._status_conflicts += count

    def drop_watches_after(self, events: int | None) -> None:
        """Every watch connection (open or new) ends after sending ``events`` events.

        Bookmarks do not count.  ``None`` stops dropping.
        """
        self._drop_after = events

    async def go_down(self) -> None:
        """Refuse connections: the listener closes and open connections are reset."""
        await self._stop()

    async def come_up(self) -> None:
        """Listen again on the same port, with the same state."""
        if self._runner is None:
            await self._start()

    def down_for(self, seconds: float) -> asyncio.Task[None]:
        """Go down now and come back after ``seconds`` (a background task to await)."""

        async def outage() -> None:
            await self.go_down()
            await asyncio.sleep(seconds)
            await self.come_up()

        return self.spawn(outage())

    def compact(self) -> int:
        """Forget the watch history: versions up to now become too old (410)."""
        self._compacted = self._last_rv
        self._history.clear()
        return self._compacted

    def expire_watches(self) -> None:
        """Send every open watch an ``ERROR`` event with a 410 ``Expired`` Status, then end it.

        This is what an established watch sees when it falls behind the server's window.
        """
        self.compact()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(
                {"type": "ERROR", "object": self._expired(self._compacted).status()}
            )
            watcher.queue.put_nowait(None)

    def trigger_bookmarks(self) -> None:
        """Send a BOOKMARK now on every watch that asked for bookmarks."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait({"type": "__BOOKMARK__"})

    # --- state for tests -----------------------------------------------------------

    def resource(self, plural: str, group: str | None = None) -> Resource:
        """The registered resource named by its plural (and group, if ambiguous)."""
        found = [
            r for r in self._resources.values() if r.plural == plural and group in (None, r.group)
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {plural!r}")
        return found[0]

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A deep copy of a stored object, or None."""
        obj = self.stored(plural, namespace, name)
        return copy.deepcopy(dict(obj)) if obj is not None else None

    def stored(self, plural: str, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """The stored object itself, or None: read it, never change it (the fake's own
        simulated controllers use it to save a copy)."""
        resource = self.resource(plural)
        return self._objects.get((resource.key, namespace, name))

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored objects of one resource (optionally one namespace)."""
        resource = self.resource(plural)
        return [
            copy.deepcopy(obj)
            for (key, ns, _), obj in sorted(
                self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if key == resource.key and (namespace is None or ns == namespace)
        ]

    @property
    def open_watches(self) -> int:
        """How many watch streams are open now."""
        return len(self._watchers)

    @property
    def resource_version(self) -> int:
        """The last resourceVersion handed out."""
        return self._last_rv

    def count(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        subresource: str | None = None,
        method: str | None = None,
    ) -> int:
        """How many logged requests match every given field."""
        return sum(
            1
            for r in self.requests
            if (verb is None or r.verb == verb)
            and (resource is None or r.resource == resource)
            and (subresource is None or r.subresource == subresource)
            and (method is None or r.method == method)
        )

    # --- the store (also used by the simulated controllers) --------------------------

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _emit(
        self, resource: Resource, kind: str, old: Mapping[str, Any] | None, new: dict[str, Any]
    ) -> None:
        rv = int(new["metadata"]["resourceVersion"])
        # No copies: a stored object is replaced by a new dict on every change, never
        # changed in place, so the history and the watchers can share it.
        self._history.append((rv, resource.key, kind, old, new))
        for watcher in list(self._watchers):
            if watcher.resource.key == resource.key:
                watcher.offer(kind, old, new)
        if resource.key == ("batch", "jobs"):
            self.jobs.observe(kind, new)
        elif resource.key in (("shipwright.io", "builds"), ("shipwright.io", "buildruns")):
            self.shipwright.observe(resource.key, kind, new)

    def _expired(self, rv: int) -> ApiError:
        return ApiError(
            410,
            f"too old resource version: {rv} ({self._compacted + 1})",
            reason="Expired",
        )

    def _check_name(self, name: Any) -> None:
        if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise ApiError(
                422,
                f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain"
                " must consist of lower case alphanumeric characters, '-' or '.'",
                details={"causes": [Cause("metadata.name", "invalid name").to_json()]},
            )

    def _validate(self, resource: Resource, obj: dict[str, Any], strict: bool, name: str) -> None:
        if resource.validator is None:
            return
        pruned = resource.validator.prune(obj)
        if pruned and strict:
            raise ApiError(
                400,
                f"strict decoding error: {', '.join(f'unknown field {p!r}' for p in pruned)}",
            )
        causes = resource.validator.errors(obj)
        if causes:
            raise ApiError(
                422,
                f"{resource.kind} {name!r} is invalid: "
                + ", ".join(f"{c.field}: {c.message}" for c in causes),
                details={
                    "name": name,
                    "group": resource.group,
                    "kind": resource.kind,
                    "causes": [c.to_json() for c in causes],
                },
            )

    def create_object(
        self,
        resource: Resource,
        namespace: str | None,
        body: Any,
        *,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Create as POST does; returns the stored object."""
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if obj["apiVersion"] != resource.api_version or obj["kind"] != resource.kind:
            raise ApiError(
                400,
                f"the API version in the data ({obj['apiVersion']}) and kind ({obj['kind']})"
                f" do not match {resource.api_version} {resource.kind}",
            )
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise ApiError(400, "metadata must be an object")
        if metadata.get("resourceVersion"):
            raise ApiError(400, "resourceVersion should not be set on objects to be created")
        if resource.namespaced:
            body_ns = metadata.get("namespace")
            if namespace is None:
                raise ApiError(405, "a namespaced resource is created in a namespace path")
            if body_ns not in (None, namespace):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent"
                    " on the request",
                )
            metadata["namespace"] = namespace
        if not metadata.get("name") and metadata.get("generateName"):
            suffix = uuid.uuid4().hex[:5]
            metadata["name"] = f"{metadata['generateName']}{suffix}"
        name = metadata.get("name")
        self._check_name(name)
        key = (resource.key, namespace if resource.namespaced else None, name)
        if key in self._objects:
            raise ApiError(
                409,
                f'{resource.plural}.{resource.group or "core"} "{name}" already exists'.replace(
                    ".core", ""
                ),
                reason="AlreadyExists",
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(field, None)
        if resource.status_subresource:
            obj.pop("status", None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        metadata["generation"] = 1
        if resource.key == ("batch", "jobs"):
            from .jobs import default_job

            default_job(obj)
        self._validate(resource, obj, strict, name)
        metadata["resourceVersion"] = self._next_rv()
        self._objects[key] = obj
        self._emit(resource, "ADDED", None, obj)
        return copy.deepcopy(obj)

    def _stored(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get((resource.key, namespace if resource.namespaced else None, name))
        if obj is None:
            raise ApiError(
                404,
                f"{resource.plural}{'.' + resource.group if resource.group else ''}"
                f' "{name}" not found',
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )
        return obj

    def _conflict(self, resource: Resource, name: str, detail: str) -> ApiError:
        group = f".{resource.group}" if resource.group else ""
        return ApiError(
            409,
            f'Operation cannot be fulfilled on {resource.plural}{group} "{name}": {detail}',
            reason="Conflict",
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def write_object(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        new: Any,
        *,
        subresource: str | None = None,
        require_version: bool = False,
        strict: bool = False,
        validate: bool = True,
        copy_result: bool = True,
    ) -> dict[str, Any]:
        """Replace as PUT does (``subresource="status"`` for ``/status``).

        ``validate=False`` is for the fake's own simulated controllers, whose writes are
        trusted: validating them would check the fake, not the client under test; and
        ``copy_result=False`` returns the stored object itself, for them to read only."""
        current = self._stored(resource, namespace, name)
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        given_rv = (new.get("metadata") or {}).get("resourceVersion")
        if given_rv:
            if given_rv != current["metadata"]["resourceVersion"]:
                raise self._conflict(
                    resource,
                    name,
                    "the object has been modified; please apply your changes to the latest"
                    " version and try again",
                )
        elif require_version and not resource.unconditional_update:
            raise ApiError(
                422,
                f"{resource.kind} {name!r} is invalid: metadata.resourceVersion: Invalid"
                " value: 0x0: must be specified for an update",
                details={
                    "name": name,
                    "kind": resource.kind,
                    "causes": [Cause("metadata.resourceVersion", "must be specified").to_json()],
                },
            )
        body_name = (new.get("metadata") or {}).get("name")
        if body_name not in (None, name):
            raise ApiError(
                400,
                f"the name of the object ({body_name}) does not match the name on the URL ({name})",
            )
        if subresource == "status":
            # Stored objects are never changed in place: the new version shares the old
            # one's other parts and gets metadata and status of its own.
            merged = {**current, "metadata": dict(current["metadata"])}
            if new.get("status") is None:
                merged.pop("status", None)
            else:
                merged["status"] = copy.deepcopy(new["status"])
        else:
            merged = copy.deepcopy(new)
            merged["apiVersion"], merged["kind"] = resource.api_version, resource.kind
            metadata = merged.setdefault("metadata", {})
            for field in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if field in current["metadata"]:
                    metadata[field] = current["metadata"][field]
                else:
                    metadata.pop(field, None)
            if resource.status_subresource:
                if "status" in current:
                    merged["status"] = copy.deepcopy(current["status"])
                else:
                    merged.pop("status", None)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if validate:
            self._validate(resource, merged, strict, name)
        if merged == current:
            return copy.deepcopy(current)  # a no-op write: same version, no event
        ignored = ("metadata", "status") if resource.status_subresource else ("metadata",)

        def spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in obj.items() if k not in ignored}

        if spec_part(merged) != spec_part(current):
            merged["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        merged["metadata"]["resourceVersion"] = self._next_rv()
        key = (resource.key, namespace if resource.namespaced else None, name)
        self._objects[key] = merged
        self._emit(resource, "MODIFIED", current, merged)
        if merged["metadata"].get("deletionTimestamp") and not merged["metadata"].get("finalizers"):
            self._remove(resource, key)
        return copy.deepcopy(merged) if copy_result else merged

    def patch_object(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Patch as PATCH does, by content type."""
        current = self._stored(resource, namespace, name)
        try:
            if content_type == "application/json-patch+json":
                patched = apply_json_patch(current, patch)
            elif content_type in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                if not isinstance(patch, dict):
                    raise PatchError("a merge patch must be a JSON object")
                patched = apply_merge_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    f"the media type {content_type!r} is not supported",
                    reason="UnsupportedMediaType",
                )
        except PatchError as exc:
            raise ApiError(422, str(exc)) from None
        if not isinstance(patched, dict):
            raise ApiError(422, "the patched object is not an object")
        patched.setdefault("metadata", {})
        if not patched["metadata"].get("resourceVersion"):
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.write_object(
            resource, namespace, name, patched, subresource=subresource, strict=strict
        )

    def delete_object(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Delete as DELETE does; returns the object kept for finalizers, or a Status."""
        options = options or {}
        key = (resource.key, namespace if resource.namespaced else None, name)
        current = self._stored(resource, namespace, name)
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            expected = preconditions.get(field)
            if expected and expected != current["metadata"].get(field):
                raise self._conflict(
                    resource,
                    name,
                    f"Precondition failed: {field.upper() if field == 'uid' else field} in"
                    f" precondition: {expected}, {field} in object meta:"
                    f" {current['metadata'].get(field)}",
                )
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            policy = "Orphan" if resource.key == ("batch", "jobs") else "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise ApiError(422, f"propagationPolicy: Unsupported value: {policy!r}")
        uid = current["metadata"]["uid"]
        if policy == "Orphan":
            self._orphan_children(uid)
        finalizers = list(current["metadata"].get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if finalizers:
            if current["metadata"].get("deletionTimestamp"):
                return copy.deepcopy(current)
            updated = copy.deepcopy(current)
            updated["metadata"]["finalizers"] = finalizers
            updated["metadata"]["deletionTimestamp"] = now_rfc3339()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            updated["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[key] = updated
            self._emit(resource, "MODIFIED", current, updated)
            if policy == "Foreground":
                self._schedule_gc(uid, foreground_owner=(resource, key))
            return copy.deepcopy(updated)
        self._remove(resource, key)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid},
        }

    def _remove(self, resource: Resource, key: tuple[tuple[str, str], str | None, str]) -> None:
        current = self._objects.pop(key)
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(resource, "DELETED", current, gone)
        self._schedule_gc(current["metadata"]["uid"])

    # --- garbage collection ------------------------------------------------------------

    def _children(self, uid: str) -> list[tuple[Resource, tuple[tuple[str, str], str | None, str]]]:
        return [
            (self._resources[key[0]], key)
            for key, obj in self._objects.items()
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or ())
        ]

    def _orphan_children(self, uid: str) -> None:
        for resource, key in self._children(uid):
            child = self._objects[key]
            updated = copy.deepcopy(child)
            updated["metadata"]["ownerReferences"] = [
                ref for ref in child["metadata"]["ownerReferences"] if ref.get("uid") != uid
            ] or None
            if updated["metadata"]["ownerReferences"] is None:
                del updated["metadata"]["ownerReferences"]
            updated["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[key] = updated
            self._emit(resource, "MODIFIED", child, updated)

    def _live_uids(self) -> set[str]:
        return {obj["metadata"]["uid"] for obj in self._objects.values()}

    def _schedule_gc(
        self,
        uid: str,
        *,
        foreground_owner: tuple[Resource, tuple[tuple[str, str], str | None, str]] | None = None,
    ) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: collected on next delete
            asyncio.get_running_loop()
            self.spawn(self._collect(uid, foreground_owner))

    async def _collect(
        self,
        uid: str,
        foreground_owner: tuple[Resource, tuple[tuple[str, str], str | None, str]] | None,
    ) -> None:
        await asyncio.sleep(self.gc_delay)
        live = self._live_uids() - ({uid} if foreground_owner else set())
        for resource, key in self._children(uid):
            child = self._objects.get(key)
            if child is None:
                continue
            others = [
                ref
                for ref in child["metadata"]["ownerReferences"]
                if ref.get("uid") != uid and ref.get("uid") in live
            ]
            if others:
                updated = copy.deepcopy(child)
                updated["metadata"]["ownerReferences"] = others
                updated["metadata"]["resourceVersion"] = self._next_rv()
                self._objects[key] = updated
                self._emit(resource, "MODIFIED", child, updated)
            else:
                with contextlib.suppress(ApiError):
                    self.delete_object(
                        resource, key[1], key[2], {"propagationPolicy": "Background"}
                    )
        if foreground_owner is not None:
            resource, key = foreground_owner
            owner = self._objects.get(key)
            if owner is not None:
                updated = copy.deepcopy(owner)
                updated["metadata"]["finalizers"] = [
                    f for f in owner["metadata"].get("finalizers", []) if f != "foregroundDeletion"
                ]
                updated["metadata"]["resourceVersion"] = owner["metadata"]["resourceVersion"]
                self.write_object(resource, key[1], key[2], updated)

    # --- HTTP ---------------------------------------------------------------------------

    def _route(self, path: str) -> _Route | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        resource = self._resources.get((group, rest[0]))
        if resource is None or resource.version != version:
            return None
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        return _Route(resource, namespace, name, subresource)

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        served = [r for r in self._resources.values() if r.group == group and r.version == version]
        if not served:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources: list[dict[str, Any]] = []
        for r in sorted(served, key=lambda r: r.plural):
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }
            )
            if r.status_subresource:
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _group(self, group: str) -> dict[str, Any] | None:
        versions = sorted({r.version for r in self._resources.values() if r.group == group})
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _discovery(self, path: str) -> dict[str, Any] | None:
        """Discovery documents (/version, /api, /apis, groups, resource lists), as kopf needs."""
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return {
                "major": "1",
                "minor": "34",
                "gitVersion": "v1.34.0-fake",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            groups = sorted({r.group for r in self._resources.values() if r.group})
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g) for g in groups],
            }
        if len(parts) == 2 and parts[0] == "apis":
            group = self._group(parts[1])
            return None if group is None else {"kind": "APIGroup", "apiVersion": "v1", **group}
        if len(parts) == 3 and parts[0] == "apis":
            return self._resource_list(parts[1], parts[2])
        return None

    @staticmethod
    def _verb(method: str, route: _Route | None, query: Mapping[str, str]) -> str | None:
        if route is None:
            return None
        if method == "GET":
            if route.name is not None:
                return "get"
            return "watch" if query.get("watch") in ("1", "true", "True") else "list"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if route.name is not None else "deletecollection",
        }.get(method)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query.items())
        route = self._route(request.path)
        verb = self._verb(request.method, route, query)
        content_type = request.headers.get("Content-Type")
        if content_type is not None:
            content_type = content_type.split(";")[0].strip()
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=query,
            verb=verb,
            group=route.resource.group if route else None,
            resource=route.resource.plural if route else None,
            subresource=route.subresource if route else None,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            content_type=content_type,
            status=0,
        )
        self.requests.append(record)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            self._inject_faults(request.method, request.path, verb, route)
            if route is None and request.method == "GET":
                document = self._discovery(request.path)
                if document is not None:
                    record.status = 200
                    return web.json_response(document)
            if route is None:
                raise ApiError(
                    404,
                    "the server could not find the requested resource"
                    f" ({request.method} {request.path})",
                )
            if verb == "watch":
                record.status = 200
                return await self._watch(request, route, query)
            body = await self._body(request)
            answer, record.status = self._dispatch(route, verb, query, body, content_type)
            return web.json_response(answer, status=record.status)
        except ApiError as error:
            record.status = error.code
            return web.json_response(error.status(), status=error.code)
        except ConnectionResetError:
            raise  # the client left, or the server is going down: not a bug of the fake
        except Exception as exc:  # a bug of the fake: answer 500 and keep it for the test
            self.internal_errors.append(exc)
            record.status = 500
            error = ApiError(500, f"fake API server bug: {exc!r}")
            return web.json_response(error.status(), status=500)

    def _inject_faults(
        self, method: str, path: str, verb: str | None, route: _Route | None
    ) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matches(method, path, verb):
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                raise ApiError(fault.status, f"injected fault: HTTP {fault.status}")
        if (
            self._status_conflicts > 0
            and route is not None
            and route.subresource == "status"
            and verb in ("update", "patch")
        ):
            self._status_conflicts -= 1
            raise self._conflict(
                route.resource,
                route.name or "",
                "the object has been modified; please apply your changes to the latest"
                " version and try again",
            )

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "the body of the request was not valid JSON") from None

    def _dispatch(
        self,
        route: _Route,
        verb: str | None,
        query: Mapping[str, str],
        body: Any,
        content_type: str | None,
    ) -> tuple[dict[str, Any], int]:
        resource, namespace, name = route.resource, route.namespace, route.name
        if route.subresource not in (None, "status") or (
            route.subresource == "status" and not resource.status_subresource
        ):
            raise ApiError(404, "the server could not find the requested resource")
        if resource.namespaced is False and namespace is not None:
            raise ApiError(404, "the server could not find the requested resource")
        strict = query.get("fieldValidation") == "Strict"
        if verb == "list":
            return self._list(resource, namespace, query), 200
        if verb == "create":
            if name is not None:
                raise ApiError(405, "create is sent to the collection")
            return self.create_object(resource, namespace, body, strict=strict), 201
        assert name is not None or verb == "deletecollection"
        if verb == "get":
            return copy.deepcopy(self._stored(resource, namespace, name or "")), 200
        if verb == "update":
            return self.write_object(
                resource,
                namespace,
                name or "",
                body,
                subresource=route.subresource,
                require_version=True,
                strict=strict,
            ), 200
        if verb == "patch":
            return self.patch_object(
                resource,
                namespace,
                name or "",
                body,
                content_type or "",
                subresource=route.subresource,
                strict=strict,
            ), 200
        if verb == "delete":
            options = dict(body) if isinstance(body, dict) else {}
            if "propagationPolicy" in query:
                options["propagationPolicy"] = query["propagationPolicy"]
            return self.delete_object(resource, namespace, name or "", options), 200
        raise ApiError(405, f"{verb} is not supported by the fake")

    def _selected(
        self, resource: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        try:
            labels = LabelSelector.parse(query.get("labelSelector"))
            fields = FieldSelector.parse(query.get("fieldSelector"))
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from None
        return [
            obj
            for (key, ns, _), obj in sorted(
                self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if key == resource.key
            and (namespace is None or ns == namespace)
            and labels.matches(obj["metadata"].get("labels"))
            and fields.matches(obj)
        ]

    def _list(
        self, resource: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> dict[str, Any]:
        rv = _int_query(query, "resourceVersion")
        if query.get("resourceVersionMatch") == "Exact" and rv is not None and rv < self._compacted:
            raise self._expired(rv)
        items = self._selected(resource, namespace, query)
        start = 0
        token = query.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token))
                list_rv, start = int(state["rv"]), int(state["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "invalid continue token") from None
            if list_rv < self._compacted:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list"
                    " result. You can start a new list without the continue parameter.",
                    reason="Expired",
                )
        limit = _int_query(query, "limit")
        metadata: dict[str, Any] = {"resourceVersion": str(self._last_rv)}
        page = items[start:]
        if limit is not None and limit > 0 and len(page) > limit:
            page = page[:limit]
            state = {"rv": self._last_rv, "start": start + limit}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - limit
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": metadata,
            "items": [copy.deepcopy(obj) for obj in page],
        }

    async def _watch(
        self, request: web.Request, route: _Route, query: Mapping[str, str]
    ) -> web.StreamResponse:
        resource = route.resource
        try:
            watcher = _Watcher(
                resource,
                route.namespace,
                LabelSelector.parse(query.get("labelSelector")),
                FieldSelector.parse(query.get("fieldSelector")),
            )
        except SelectorError as exc:
            raise ApiError(400, str(exc)) from None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        timeout = _int_query(query, "timeoutSeconds")
        rv_text = query.get("resourceVersion") or ""
        initial: list[dict[str, Any]] = []
        if rv_text in ("", "0"):
            initial = [
                {"type": "ADDED", "object": copy.deepcopy(obj)}
                for obj in self._selected(resource, route.namespace, query)
            ]
        else:
            try:
                rv = int(rv_text)
            except ValueError:
                raise ApiError(400, f"invalid resource version {rv_text!r}") from None
            if rv < self._compacted:
                initial = [{"type": "ERROR", "object": self._expired(rv).status()}]
            else:
                for event_rv, key, kind, old, new in self._history:
                    event = watcher.event(kind, old, new) if key == resource.key else None
                    if event_rv > rv and event is not None:
                        initial.append(event)
        expired = bool(initial) and initial[0]["type"] == "ERROR"
        if not expired:
            self._watchers.add(watcher)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        self._stream_responses.add(response)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        sent = 0
        try:
            await response.prepare(request)
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
                sent += 1
                if self._drop_after is not None and sent >= self._drop_after:
                    return response
            if expired:
                return response
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    wait = remaining if wait is None else min(wait, remaining)
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    item = {"type": "__BOOKMARK__"}
                if item is None:
                    break
                if item["type"] == "__BOOKMARK__":
                    if not bookmarks or not watcher.queue.empty():
                        continue
                    item = {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": resource.kind,
                            "apiVersion": resource.api_version,
                            "metadata": {"resourceVersion": str(self._last_rv)},
                        },
                    }
                    await response.write(json.dumps(item).encode() + b"\n")
                    continue
                await response.write(json.dumps(item).encode() + b"\n")
                sent += 1
                if item["type"] == "ERROR":
                    break
                if self._drop_after is not None and sent >= self._drop_after:
                    break
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self._watchers.discard(watcher)
            self._stream_responses.discard(response)
            with contextlib.suppress(Exception):
                await response.write_eof()

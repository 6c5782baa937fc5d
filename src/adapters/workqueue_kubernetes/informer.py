"""An informer: a local cache of one resource kind kept current by list + watch.

``Informer.run`` lists, then watches from the list's ``resourceVersion`` with bookmarks.
When the watch ends or breaks it resumes from the last version it saw (after a backoff
if it broke or ended without a single event or bookmark); a 410 ``Gone`` (HTTP 410, or
an ERROR event inside the watch) makes it list again.  The cache is keyed
``namespace/name`` and scoped by namespace (or all) and label selector.  Handlers hear
every change of the cache, on the event loop, in order:

* ``ADDED`` / ``MODIFIED`` / ``DELETED`` events from the watch;
* after a re-list, the difference between the old cache and the new list (objects that
  vanished meanwhile come as ``DELETED`` with their last known state).

Events are deduplicated by ``resourceVersion``: an object event whose version equals the
cached one is dropped, so a resumed watch never repeats a change to the handlers.  There
is no polling: between events the informer waits on the watch stream.

``remember`` is client-go's mutation cache: the answer of the process's own write goes
into the cache at once, so the next reconcile reads what was just written instead of a
state one watch round trip old (whose ``resourceVersion`` a status write would send,
to be answered 409).  The handlers do not hear it: the caller knows what it wrote, and
the watch's echo of the write carries the same version, so it is dropped too.  A watch
event older than the cached object (an event from before a remembered write) updates
only the informer's version, never the cache.  Versions are compared as the integers
every Kubernetes API server (etcd) issues; when either is not an integer the newer
state cannot be told, and the watch's event wins.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import attrs

from workqueue_kubernetes.port import (
    ClusterClient,
    ClusterError,
    Gone,
    ResourceKind,
    WatchEventType,
    object_key,
    resource_version_of,
)

__all__ = [
    "Backoff",
    "CacheEvent",
    "CacheEventType",
    "Handler",
    "Informer",
    "controller_owner_key",
    "owner_keys",
]


class CacheEventType(enum.Enum):
    """What happened to a cached object."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@attrs.frozen
class CacheEvent:
    """A change of the cache: ``old`` is the previous state for MODIFIED and DELETED."""

    type: CacheEventType
    key: str
    object: Mapping[str, Any]
    old: Mapping[str, Any] | None = None


Handler = Callable[[CacheEvent], None]
"""Called for each cache change; must not block (enqueue a key and return)."""


@attrs.frozen
class Backoff:
    """Exponential delays between failed attempts: ``initial * factor**n``, capped."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` consecutive failures (``failures >= 1``)."""
        return float(min(self.maximum, self.initial * self.factor ** max(0, failures - 1)))


def _version(obj: Mapping[str, Any]) -> int | None:
    text = resource_version_of(obj)
    return int(text) if text.isdigit() else None


def _later(obj: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is known to be a later state than ``other`` (integer versions)."""
    version, known = _version(obj), _version(other)
    return version is not None and known is not None and version > known


def _newer(obj: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """Whether ``obj`` should replace ``cached`` (see the module's docstring)."""
    version, known = _version(obj), _version(cached)
    if version is None or known is None:
        return resource_version_of(obj) != resource_version_of(cached)
    return version > known


def owner_keys(
    obj: Mapping[str, Any], owner: ResourceKind, *, controller_only: bool = False
) -> list[str]:
    """Cache keys (``namespace/name``) of ``obj``'s owners of kind ``owner``.

    Owner references name objects in the owned object's namespace (cluster-scoped
    owners have no namespace).  ``controller_only`` keeps the ``controller: true`` one.
    """
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") if owner.namespaced else None
    keys = []
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("apiVersion") != owner.api_version or ref.get("kind") != owner.kind:
            continue
        if controller_only and not ref.get("controller"):
            continue
        keys.append(f"{namespace}/{ref['name']}" if namespace else str(ref["name"]))
    return keys


def controller_owner_key(obj: Mapping[str, Any], owner: ResourceKind) -> str | None:
    """The key of ``obj``'s controlling owner of kind ``owner``, if any."""
    keys = owner_keys(obj, owner, controller_only=True)
    return keys[0] if keys else None


@attrs.define
class Informer:
    """A cache of one resource kind, filled by list and kept current by watch.

    Run it in a task group (``tg.start_soon(informer.run)``); cancel the group to stop.
    ``watch_timeout`` is the server-side ``timeoutSeconds`` of each watch request (the
    informer resumes from its last version when a watch ends).
    """

    client: ClusterClient
    kind: ResourceKind
    namespace: str | None = None
    label_selector: str | None = None
    backoff: Backoff = Backoff()
    watch_timeout: int = 300
    _handlers: list[Handler] = attrs.field(factory=list)
    _cache: dict[str, Mapping[str, Any]] = attrs.field(factory=dict, init=False)
    _resource_version: str = attrs.field(default="", init=False)
    _synced: anyio.Event = attrs.field(factory=anyio.Event, init=False)
    _lists: int = attrs.field(default=0, init=False)
    _watches: int = attrs.field(default=0, init=False)

    # --- reading ----------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` for every later cache change (add handlers before ``run``)."""
        self._handlers.append(handler)

    @property
    def has_synced(self) -> bool:
        """True once the first list has filled the cache."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Wait for the first list (bound it with ``anyio.fail_after``)."""
        await self._synced.wait()

    def remember(self, obj: Mapping[str, Any]) -> CacheEvent | None:
        """Put the answer of this process's own write into the cache, unless the cache
        already holds that version or a newer one; the change made, without notifying."""
        key = object_key(obj)
        old = self._cache.get(key)
        if old is not None and not _newer(obj, old):
            return None
        self._cache[key] = obj
        if old is None:
            return CacheEvent(CacheEventType.ADDED, key, obj)
        return CacheEvent(CacheEventType.MODIFIED, key, obj, old)

    def get(self, key: str) -> Mapping[str, Any] | None:
        """The cached object with this ``namespace/name`` key."""
        return self._cache.get(key)

    def keys(self) -> list[str]:
        """Every cached key, sorted."""
        return sorted(self._cache)

    def objects(self) -> Iterator[Mapping[str, Any]]:
        """The cached objects, by key."""
        for key in self.keys():
            yield self._cache[key]

    @property
    def resource_version(self) -> str:
        """The last version the informer has seen (list, event or bookmark)."""
        return self._resource_version

    @property
    def list_count(self) -> int:
        """How many lists it has made (1 + re-lists after 410)."""
        return self._lists

    @property
    def watch_count(self) -> int:
        """How many watch requests it has started."""
        return self._watches

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until cancelled; transient errors are retried with backoff."""
        need_list = True
        failures = 0
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                    failures = 0
                if await self._watch():
                    failures = 0
                    continue
                failures += 1  # a watch that ended without a single event: back off
            except Gone:
                need_list = True
                failures += 1
            except ClusterError:
                failures += 1
            await anyio.sleep(self.backoff.delay(failures))

    async def _relist(self) -> None:
        listed = await self.client.list(
            self.kind, namespace=self.namespace, label_selector=self.label_selector
        )
        self._lists += 1
        fresh = {object_key(obj): obj for obj in listed.items}
        old = self._cache
        self._cache = dict(fresh)
        self._resource_version = listed.resource_version
        for key in sorted(old.keys() - fresh.keys()):
            self._notify(CacheEvent(CacheEventType.DELETED, key, old[key], old[key]))
        for key in sorted(fresh):
            if key not in old:
                self._notify(CacheEvent(CacheEventType.ADDED, key, fresh[key]))
            elif resource_version_of(old[key]) != resource_version_of(fresh[key]):
                self._notify(CacheEvent(CacheEventType.MODIFIED, key, fresh[key], old[key]))
        self._synced.set()

    async def _watch(self) -> bool:
        """One watch request; True if it delivered at least one event."""
        self._watches += 1
        progressed = False
        stream = self.client.watch(
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            resource_version=self._resource_version,
            allow_bookmarks=True,
            timeout_seconds=self.watch_timeout,
        )
        try:
            async for event in stream:
                progressed = True
                version = event.resource_version
                if event.type is WatchEventType.BOOKMARK:
                    self._resource_version = version or self._resource_version
                    continue
                self._apply(event.type, event.object)
                if version:
                    self._resource_version = version
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):  # close the connection even when cancelled
                    await aclose()
        return progressed

    def _apply(self, kind: WatchEventType, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        old = self._cache.get(key)
        if kind is WatchEventType.DELETED:
            if old is None or _later(old, obj):
                return  # gone already, or what is cached was created again since
            del self._cache[key]
            self._notify(CacheEvent(CacheEventType.DELETED, key, obj, old))
            return
        if old is not None and not _newer(obj, old):
            return  # already seen (a replay after resuming, an own write's echo)
        self._cache[key] = obj
        if old is None:
            self._notify(CacheEvent(CacheEventType.ADDED, key, obj))
        else:
            self._notify(CacheEvent(CacheEventType.MODIFIED, key, obj, old))

    def _notify(self, event: CacheEvent) -> None:
        for handler in self._handlers:
            handler(event)

"""A simulated Shipwright (v1beta1) Build and BuildRun controller for the fake API server.

``serve_shipwright(kube)`` serves ``shipwright.io/v1beta1`` Builds and BuildRuns from the
real upstream CRDs (the unchanged copies vendored in ``workqueue_shipwright/crds``),
validated by their schemas; ``kube.shipwright`` then drives them:

* a created **Build** is registered: ``status.registered: "True"``, reason ``Succeeded``
  (Shipwright's Build controller after its validations pass), or, when its
  ``fake.workqueue.dev/registration`` annotation names a ``BuildReason``,
  ``registered: "False"`` with that reason; a BuildRun naming it then fails
  ``BuildRegistrationFailed`` with ``buildrun.go``'s message quoting the reason;
* a created **BuildRun** runs to the outcome its annotations ask for (the BuildRun's own,
  else those of the Build it names, since a BuildRun made for a Build-only template has
  none):

``fake.workqueue.dev/outcome``
    ``Succeeded`` (default, see ``ShipwrightController.default_outcome``): condition
    ``Succeeded`` ``True``, reason ``Succeeded``, with ``status.output`` (``digest``,
    ``size``) and, for a Git source, ``status.source.git`` (``commitSha``,
    ``commitAuthor``, and ``branchName`` only when the source names no ``revision``, as
    ``buildrun_types.go`` says);
    ``Failed:<reason>`` (``Failed`` alone means reason ``Failed``): ``False`` with that
    reason and the upstream message where ``conditions.go`` writes one;
    ``failureDetails`` for the reasons read from a failed pod (``Failed``,
    ``StepOutOfMemory``, ``PodEvicted``, ``VulnerabilitiesFound``);
    ``never``: started (``Running``) and left running.
``fake.workqueue.dev/outcomes``
    a comma-separated list of outcomes, one per instance (the ``workqueue.dev/instance``
    label *n* picks the *n*-th, the last repeats); wins over ``…/outcome``.
``fake.workqueue.dev/delay``
    seconds between the start and the outcome (default ``ShipwrightController.delay``).

The writes follow ``buildrun.go``: ``status.buildSpec`` (the Build's spec, or the embedded
one) first; a BuildRun naming a Build that does not exist fails at once with
``BuildNotFound``; one already canceled at creation fails with ``BuildRunCanceled``; then
``startTime`` and ``Succeeded`` ``Unknown``/``Pending``, ``Unknown``/``Running``, and the
outcome with ``completionTime`` (its condition's ``lastTransitionTime``).
**Cancellation**: a BuildRun whose ``spec.state`` becomes ``BuildRunCanceled`` before it
finished gets ``Unknown``/``BuildRunCanceled`` (the TaskRun is being canceled), then
``False``/``BuildRunCanceled`` with ``completionTime``, as ``conditions.go`` writes them.
Every condition has ``type``, ``status``, ``reason``, ``message``, ``lastTransitionTime``.
Objects are written in-process (no HTTP, no faults); each write is a watch event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import yaml

from .jobs import DELAY_ANNOTATION, OUTCOME_ANNOTATION, OUTCOMES_ANNOTATION
from .resources import Resource, resource_from_crd
from .server import ApiError, now_rfc3339

if TYPE_CHECKING:
    from .server import FakeKube

__all__ = [
    "BUILDS_KEY",
    "BUILD_RUNS_KEY",
    "REGISTRATION_ANNOTATION",
    "SHIPWRIGHT_CRDS",
    "ShipwrightController",
    "serve_shipwright",
]

SHIPWRIGHT_CRDS: Final = (
    Path(__file__).resolve().parents[3] / "src" / "adapters" / "workqueue_shipwright" / "crds"
)
"""The vendored, unchanged upstream Shipwright CRDs (a unit test checks they are copies)."""
BUILDS_KEY: Final = ("shipwright.io", "builds")
BUILD_RUNS_KEY: Final = ("shipwright.io", "buildruns")
CANCELED: Final = "BuildRunCanceled"
REGISTRATION_ANNOTATION: Final = "fake.workqueue.dev/registration"
"""On a Build: the ``BuildReason`` its validation fails with (``registered: "False"``)."""

_FAILURE_DETAIL_REASONS: Final = ("Failed", "StepOutOfMemory", "PodEvicted", "VulnerabilitiesFound")


@functools.cache
def _manifest(file_name: str) -> dict[str, Any]:
    """A CRD file, read once per process (the two files take seconds to load)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    manifest: dict[str, Any] = yaml.load((SHIPWRIGHT_CRDS / file_name).read_text(), Loader=loader)
    return manifest


@functools.cache
def _resource(file_name: str) -> Resource:
    return resource_from_crd(_manifest(file_name), "v1beta1")


def serve_shipwright(kube: FakeKube) -> tuple[Resource, Resource]:
    """Serve Builds and BuildRuns (``v1beta1``) from the upstream CRDs (again: no change)."""
    served = []
    for file_name in ("shipwright.io_builds.yaml", "shipwright.io_buildruns.yaml"):
        manifest = _manifest(file_name)
        key = (manifest["spec"]["group"], manifest["spec"]["names"]["plural"])
        served.append(
            kube.served(key) or kube.register_crd_resource(manifest, _resource(file_name))
        )
    return served[0], served[1]


def _message(reason: str, run: dict[str, Any], pod: str) -> str:
    """The message ``conditions.go`` (or ``buildrun.go``) writes with ``reason``."""
    namespace, name = run["metadata"].get("namespace"), run["metadata"]["name"]
    build_name = ((run.get("spec") or {}).get("build") or {}).get("name")
    messages = {
        "Failed": f"buildrun step step-build failed, for detailed information: kubectl"
        f" --namespace {namespace} logs {pod} --container=step-build",
        "StepOutOfMemory": f"buildrun step step-build failed due to out-of-memory, for detailed"
        f" information: kubectl --namespace {namespace} logs {pod} --container=step-build",
        "PodEvicted": "The node was low on resource: ephemeral-storage.",
        "VulnerabilitiesFound": "Vulnerabilities have been found in the image which can be seen"
        f" in the buildrun status. For detailed information,see kubectl --namespace"
        f" {namespace} logs {pod} --container=step-image-processing",
        "BuildRunTimeout": f"BuildRun {name} failed to finish within 15m0s",
        "BuildNotFound": f'build.shipwright.io "{build_name}" not found',
        "TaskRunIsMissing": f"taskRun {name}-abcde doesn't exist",
        "ServiceAccountNotFound": "service account builder-sa not found",
        "ClusterBuildStrategyNotFound": 'clusterbuildstrategies.shipwright.io "buildah" not found',
    }
    return messages.get(reason, f"simulated BuildRun failure ({reason})")


def _condition(status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_rfc3339(),
    }


@attrs.define
class ShipwrightController:
    """Drives the fake's Builds and BuildRuns; toggle with ``enabled``, speed with
    ``delay`` (start to outcome) and ``step`` (between writes)."""

    server: FakeKube
    enabled: bool = True
    delay: float = 0.0
    step: float = 0.0
    default_outcome: str = "Succeeded"
    _running: dict[str, asyncio.Task[None]] = attrs.field(factory=dict)
    _cancels: set[str] = attrs.field(factory=set)

    # --- events (called by the server) --------------------------------------------------

    def observe(self, key: tuple[str, str], kind: str, obj: dict[str, Any]) -> None:
        """Called by the server for every Build and BuildRun event."""
        if not self.enabled:
            return
        if key == BUILDS_KEY:
            if kind == "ADDED":
                self._spawn(self._register(obj))
            return
        uid = obj["metadata"]["uid"]
        if kind == "DELETED":
            task = self._running.pop(uid, None)
            if task is not None:
                task.cancel()
            return
        if kind == "ADDED":
            task = self._spawn(self._drive(obj))
            if task is not None:
                self._running[uid] = task
                task.add_done_callback(lambda _: self._running.pop(uid, None))
        elif (
            kind == "MODIFIED"
            and (obj.get("spec") or {}).get("state") == CANCELED
            and not self._finished(obj)
            and uid not in self._cancels
        ):
            self._cancels.add(uid)
            task = self._running.pop(uid, None)
            if task is not None:
                task.cancel()
            self._spawn(self._cancel(obj))

    def _spawn(self, coro: Any) -> asyncio.Task[None] | None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            task: asyncio.Task[None] = self.server.spawn(coro)
            return task
        coro.close()
        return None

    @staticmethod
    def _succeeded(obj: dict[str, Any]) -> dict[str, Any] | None:
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Succeeded":
                return dict(condition)
        return None

    def _finished(self, obj: dict[str, Any]) -> bool:
        condition = self._succeeded(obj)
        return condition is not None and condition.get("status") in ("True", "False")

    # --- writes ---------------------------------------------------------------------------

    async def _write_status(
        self, key: tuple[str, str], obj: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``status`` into the stored object's (``Succeeded`` replaces the condition of
        its type, as ``SetCondition`` does); the object written, or None when it is gone."""
        namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        current = self.server.stored(key[1], namespace, name)
        if current is None or current["metadata"]["uid"] != obj["metadata"]["uid"]:
            return None
        merged = dict(current.get("status") or {})
        for condition in status.pop("conditions", []):
            others = [c for c in merged.get("conditions") or [] if c["type"] != condition["type"]]
            merged["conditions"] = [*others, condition]
        merged.update(status)
        updated = {**current, "metadata": dict(current["metadata"]), "status": merged}
        resource = self.server.resource(key[1], key[0])
        try:
            return self.server.write_object(
                resource,
                namespace,
                name,
                updated,
                subresource="status",
                validate=False,
                copy_result=False,
            )
        except ApiError:
            return None

    async def _register(self, build: dict[str, Any]) -> None:
        await asyncio.sleep(self.step)
        failing = (build["metadata"].get("annotations") or {}).get(REGISTRATION_ANNOTATION)
        status = {
            "registered": "True",
            "reason": "Succeeded",
            "message": "all validations succeeded",
        }
        if failing:
            status = {
                "registered": "False",
                "reason": failing,
                "message": f"simulated validation failure ({failing})",
            }
        await self._write_status(BUILDS_KEY, build, status)

    async def _registration(self, namespace: str, build: dict[str, Any]) -> dict[str, Any] | None:
        """The Build's registration status; a Build that asks for a registration failure is
        waited for until registered, as buildrun.go requeues ("not yet validated")."""
        name = build["metadata"]["name"]
        while (build["metadata"].get("annotations") or {}).get(REGISTRATION_ANNOTATION):
            if (build.get("status") or {}).get("registered"):
                return dict(build["status"])
            await asyncio.sleep(0.01)
            current = self.server.get("builds", namespace, name)
            if current is None:
                return None
            build = current
        return dict(build.get("status") or {})

    def _outcome(self, run: dict[str, Any], build: dict[str, Any] | None) -> tuple[str, float]:
        annotations = dict((build or {}).get("metadata", {}).get("annotations") or {})
        annotations.update(run["metadata"].get("annotations") or {})
        outcome = annotations.get(OUTCOME_ANNOTATION, self.default_outcome)
        if annotations.get(OUTCOMES_ANNOTATION):
            outcomes = [o.strip() for o in annotations[OUTCOMES_ANNOTATION].split(",")]
            index = int((run["metadata"].get("labels") or {}).get("workqueue.dev/instance", "0"))
            outcome = outcomes[min(index, len(outcomes) - 1)]
        return outcome, float(annotations.get(DELAY_ANNOTATION, self.delay))

    async def _fail(self, run: dict[str, Any], reason: str, message: str) -> None:
        now = now_rfc3339()
        status: dict[str, Any] = {
            "completionTime": now,
            "conditions": [_condition("False", reason, message)],
        }
        if reason in _FAILURE_DETAIL_REASONS:
            pod = f"{run['metadata']['name']}-abcde-pod"
            container = (
                "step-image-processing" if reason == "VulnerabilitiesFound" else "step-build"
            )
            status["failureDetails"] = {"location": {"pod": pod, "container": container}}
        await self._write_status(BUILD_RUNS_KEY, run, status)

    async def _drive(self, run: dict[str, Any]) -> None:
        namespace = run["metadata"].get("namespace")
        spec = run.get("spec") or {}
        build_name = (spec.get("build") or {}).get("name")
        await asyncio.sleep(self.step)
        build: dict[str, Any] | None = None
        if build_name is not None:
            build = self.server.get("builds", namespace, build_name)
            if build is None:
                await self._fail(run, "BuildNotFound", _message("BuildNotFound", run, ""))
                return
            registration = await self._registration(namespace, build) or {}
            if registration.get("registered") == "False":
                message = (
                    f"the Build is not registered correctly, build: {build_name}, registered"
                    f" status: False, reason: {registration.get('reason', '')}"
                )  # buildrun.go
                await self._fail(run, "BuildRegistrationFailed", message)
                return
        if spec.get("state") == CANCELED:
            await self._fail(run, CANCELED, "the BuildRun is marked canceled.")
            return
        build_spec = (build or {}).get("spec") or (spec.get("build") or {}).get("spec") or {}
        if await self._write_status(BUILD_RUNS_KEY, run, {"buildSpec": build_spec}) is None:
            return
        outcome, delay = self._outcome(run, build)
        pending = _condition("Unknown", "Pending", "Pending")
        started = {"startTime": now_rfc3339(), "conditions": [pending]}
        if await self._write_status(BUILD_RUNS_KEY, run, started) is None:
            return
        await asyncio.sleep(self.step)
        running = _condition(
            "Unknown", "Running", "Not all Steps in the Task have finished executing"
        )
        if await self._write_status(BUILD_RUNS_KEY, run, {"conditions": [running]}) is None:
            return
        if outcome == "never":
            return
        await asyncio.sleep(delay)
        if outcome == "Succeeded":
            await self._succeed(run, build_spec)
            return
        if not outcome.startswith("Failed"):
            raise ValueError(f"unknown {OUTCOME_ANNOTATION} {outcome!r}")
        reason = outcome.partition(":")[2] or "Failed"
        pod = f"{run['metadata']['name']}-abcde-pod"
        await self._fail(run, reason, _message(reason, run, pod))

    async def _succeed(self, run: dict[str, Any], build_spec: dict[str, Any]) -> None:
        name = run["metadata"]["name"]
        digest = hashlib.sha256(f"{run['metadata']['uid']}/image".encode()).hexdigest()
        status: dict[str, Any] = {
            "completionTime": now_rfc3339(),
            "output": {"digest": f"sha256:{digest}", "size": 4096 + len(name)},
            "conditions": [_condition("True", "Succeeded", "All Steps have completed executing")],
        }
        source = build_spec.get("source") or {}
        if source.get("type") == "Git":
            git = source.get("git") or {}
            result = {"commitSha": hashlib.sha1(str(git).encode()).hexdigest()}
            result["commitAuthor"] = "Simulated Author"
            if not git.get("revision"):  # BranchName: "set only when revision is not specified"
                result["branchName"] = "main"  # the repository's default branch
            status["source"] = {"git": result}
        await self._write_status(BUILD_RUNS_KEY, run, status)

    async def _cancel(self, run: dict[str, Any]) -> None:
        await asyncio.sleep(self.step)
        message = (
            "The user requested the BuildRun to be canceled.  This BuildRun controller has"
            " requested the TaskRun be canceled.  That request has not been process by"
            " Tekton's TaskRun controller yet."
        )
        canceling = {"conditions": [_condition("Unknown", CANCELED, message)]}
        if await self._write_status(BUILD_RUNS_KEY, run, canceling) is None:
            return
        await asyncio.sleep(self.step)
        done = "The BuildRun and underlying TaskRun were canceled successfully."
        await self._write_status(
            BUILD_RUNS_KEY,
            run,
            {"completionTime": now_rfc3339(), "conditions": [_condition("False", CANCELED, done)]},
        )

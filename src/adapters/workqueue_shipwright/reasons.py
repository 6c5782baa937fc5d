"""What each reason of a BuildRun's ``Succeeded`` condition means for a Work's instance.

``BUILD_RUN_REASONS`` classifies every reason the upstream Shipwright source (v1beta1,
the files listed in ``/work/shared/upstream/shipwright/SOURCE.md``) can put on a
BuildRun's ``Succeeded`` condition, with a one-line rationale each:

* Shipwright's own reasons: the constants of ``resources/conditions.go``, the
  ``BuildRunState…`` constants of ``buildrun_types.go``, the literals ``conditions.go``
  writes (``BuildRunTimeout``, ``PipelineRunFailed``) or passes through from a PipelineRun;
* the ``BuildReason`` constants of ``build_types.go``: a Build's validation reasons, which
  the BuildRun reconciler also writes itself for the checks it repeats on a BuildRun
  (volumes, step resources, scheduling, platforms); on a BuildRun the others arrive as
  ``BuildRegistrationFailed``;
* the Tekton TaskRun reasons ``conditions.go`` names (``TEKTON_REASONS``), passed through
  unless it rewrites them.

A unit test parses the Go files and fails when a reason is missing here.  Reasons from
elsewhere (Tekton reasons the source does not name, such as ``TaskRunImagePullFailed``)
are classified by the condition's status: ``False`` retryable (DESIGN §4: unknown
failures are retried, bounded by the budget), ``Unknown`` pending.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = [
    "BUILD_RUN_REASONS",
    "CANCELED",
    "TEKTON_REASONS",
    "ReasonClass",
    "Reasoned",
]

CANCELED: Final = "BuildRunCanceled"
"""``BuildRunStateCancel``: the value of ``spec.state`` that cancels a BuildRun, and the
reason of its ``Succeeded`` condition once canceled (``Unknown`` while Tekton stops it,
then ``False``)."""


class ReasonClass(enum.Enum):
    """What a reason says about the instance."""

    SUCCEEDED = "succeeded"
    PERMANENT = "permanent"
    """Failed, and a retry of the same templates would fail the same way."""
    RETRYABLE = "retryable"
    """Failed for a cause that may pass; retried within the Work's budget."""
    CANCELED = "canceled"
    """Someone canceled it: a permanent failure when finished, still running before."""
    RUNNING = "running"
    PENDING = "pending"
    """Not running yet: the Work's ``claimTimeout`` bounds it."""


@attrs.frozen
class Reasoned:
    """A reason's class and why."""

    reason_class: ReasonClass
    rationale: str


def _r(rationale: str) -> Reasoned:
    return Reasoned(ReasonClass.RETRYABLE, rationale)


def _p(rationale: str) -> Reasoned:
    return Reasoned(ReasonClass.PERMANENT, rationale)


_SPEC = "the templates are wrong for this cluster; the same BuildRun fails the same way"
_PARAMS = "the parameter values do not fit the strategy's parameters (the spec)"
_SCHEDULING = "a scheduling field is invalid (the spec)"

BUILD_RUN_REASONS: Final[Mapping[str, Reasoned]] = {
    # --- success and progress ------------------------------------------------------------
    "Succeeded": Reasoned(
        ReasonClass.SUCCEEDED,
        "the TaskRun or PipelineRun succeeded (Tekton's TaskRunReasonSuccessful; also the"
        " Build reason SucceedStatus)",
    ),
    "Started": Reasoned(
        ReasonClass.PENDING, "the TaskRun has started; its pod may not be running yet"
    ),
    "Running": Reasoned(ReasonClass.RUNNING, "the TaskRun's pod runs"),
    # --- cancellation -----------------------------------------------------------------------
    CANCELED: Reasoned(
        ReasonClass.CANCELED,
        "spec.state BuildRunCanceled was set (by this controller's stop, or by a person):"
        " running while Tekton stops it, then a permanent failure",
    ),
    "TaskRunCancelled": Reasoned(
        ReasonClass.CANCELED,
        "someone canceled the TaskRun itself (passed through when the BuildRun was not"
        " canceled): a deliberate stop, not retried",
    ),
    "PipelineRunCancelled": Reasoned(
        ReasonClass.CANCELED, "as TaskRunCancelled, for the PipelineRun executor"
    ),
    # --- failures that may pass ---------------------------------------------------------------
    "Failed": _r(
        "a build step failed (Tekton Failed or StepFailed; the message names the step):"
        " registries and networks fail transiently, and the budget bounds the rest, as for"
        " a failed Job pod"
    ),
    "PipelineRunFailed": _r("as Failed, for the PipelineRun executor"),
    "BuildRunTimeout": _r(
        "the BuildRun ran past its timeout (Tekton TaskRunTimeout / PipelineRunTimeout): a"
        " timeout, transient like a Job's DeadlineExceeded"
    ),
    "TaskRunTimeout": _r("rewritten to BuildRunTimeout by conditions.go"),
    "PipelineRunTimeout": _r("rewritten to BuildRunTimeout by conditions.go"),
    "PodEvicted": _r(
        "the node evicted the build pod (ephemeral storage or memory pressure): the node's"
        " trouble, not the build's"
    ),
    "StepOutOfMemory": _r(
        "a step was OOM-killed: at its memory limit or under node memory pressure, which"
        " the same build may not meet again; the budget bounds a build that always does"
    ),
    "TaskRunIsMissing": _r("the TaskRun was deleted under the running BuildRun"),
    "BuildNotFound": _r(
        "the named Build is not in Shipwright's cache; the templates always carry the Build"
        " a BuildRun names and it is created first, so this is a cache that lags the create"
        " (or a Build deleted meanwhile): the next instance creates it again"
    ),
    "RemoteRepositoryUnreachable": _r(
        "the Git repository could not be reached (a Build reason: on a BuildRun it arrives"
        " as BuildRegistrationFailed)"
    ),
    # --- failures no retry fixes --------------------------------------------------------------
    "VulnerabilitiesFound": _p(
        "the image scan found vulnerabilities that are not ignored: the same sources build"
        " the same image"
    ),
    "BuildRegistrationFailed": _p(
        "the Build failed Shipwright's validation (a missing secret or strategy, a bad"
        " field; the message quotes the Build's reason): someone must change the Build or"
        " the cluster; when the instance's Build carries a reason of this table that is a"
        " failure, that reason's class decides (RemoteRepositoryUnreachable: retryable)"
    ),
    "SetOwnerReferenceFailed": _p(
        "retention.atBuildDeletion makes Shipwright set the Build as the BuildRun's"
        " controller owner; the Work already is, so it fails every time"
    ),
    "ServiceAccountNotFound": _p("the BuildRun's serviceAccount does not exist"),
    "BuildStrategyNotFound": _p("the named BuildStrategy does not exist in the namespace"),
    "ClusterBuildStrategyNotFound": _p("the named ClusterBuildStrategy does not exist"),
    "UnknownStrategyKind": _p(
        "the strategy kind is neither BuildStrategy nor ClusterBuildStrategy"
    ),
    "UnknownBuildStrategyKind": _p("as UnknownStrategyKind (the Build's reason)"),
    "TaskRunGenerationFailed": _p("no TaskRun can be made of this Build and strategy"),
    "PipelineRunGenerationFailed": _p("no PipelineRun can be made of this Build and strategy"),
    "BuildRunNameInvalid": _p("the BuildRun's name is not a label value"),
    "BuildNameInvalid": _p("the Build's name is not a label value"),
    "BuildRunNoRefOrSpec": _p("the BuildRun names no Build and embeds none"),
    "BuildRunAmbiguousBuild": _p("the BuildRun names a Build and embeds one"),
    "BuildRunBuildFieldOverrideForbidden": _p(
        "the BuildRun overrides a field of an embedded build"
    ),
    "MissingParameterValues": _p(_PARAMS),
    "RestrictedParametersInUse": _p(_PARAMS),
    "UndefinedParameter": _p(_PARAMS),
    "WrongParameterValueType": _p(_PARAMS),
    "InconsistentParameterValues": _p(_PARAMS),
    "EmptyArrayItemParameterValues": _p(_PARAMS),
    "IncompleteConfigMapValueParameterValues": _p(_PARAMS),
    "IncompleteSecretValueParameterValues": _p(_PARAMS),
    "SpecSourceSecretRefNotFound": _p("a secret the Build names does not exist"),
    "SpecOutputSecretRefNotFound": _p("a secret the Build names does not exist"),
    "SpecBuilderSecretRefNotFound": _p("a secret the Build names does not exist"),
    "MultipleSecretRefNotFound": _p("secrets the Build names do not exist"),
    "SpecEnvNameCanNotBeBlank": _p(_SPEC),
    "SpecEnvOnlyOneOfValueOrValueFromMustBeSpecified": _p(_SPEC),
    "SpecEnvNameForbidden": _p(_SPEC),
    "RuntimePathsCanNotBeEmpty": _p(_SPEC),
    "VolumeDoesNotExist": _p("a volume the TaskRun mounts (a ConfigMap, Secret, PVC) is missing"),
    "VolumeNotOverridable": _p("the BuildRun overrides a volume the strategy does not allow"),
    "UndefinedVolume": _p("the BuildRun overrides a volume the strategy does not define"),
    "UndefinedStepResource": _p("stepResources names a step the strategy does not have"),
    "TriggerNameCanNotBeBlank": _p(_SPEC),
    "TriggerInvalidType": _p(_SPEC),
    "TriggerInvalidGitHubWebHook": _p(_SPEC),
    "TriggerInvalidImage": _p(_SPEC),
    "TriggerInvalidPipeline": _p(_SPEC),
    "OutputTimestampNotSupported": _p(_SPEC),
    "OutputTimestampNotValid": _p(_SPEC),
    "NodeSelectorNotValid": _p(_SCHEDULING),
    "TolerationNotValid": _p(_SCHEDULING),
    "SchedulerNameNotValid": _p(_SCHEDULING),
    "RuntimeClassNameNotValid": _p(_SCHEDULING),
    "NodeSelectorPlatformConflict": _p("the nodeSelector contradicts output.platforms"),
    "InvalidPlatform": _p("output.platforms names an invalid platform"),
    "ExecutorNotPipelineRun": _p(
        "multi-platform builds need Shipwright's PipelineRun executor (cluster configuration)"
    ),
    "NodePlatformNotFound": _p(
        "no node of a requested platform: a retry minutes later meets the same nodes"
    ),
}
"""Every reason of the upstream source, classified (see the module docstring)."""

TEKTON_REASONS: Final[Mapping[str, str | None]] = {
    "TaskRunReasonStarted": "Started",
    "TaskRunReasonRunning": "Running",
    "TaskRunReasonSuccessful": "Succeeded",
    "TaskRunReasonFailed": "Failed",
    "TaskRunReasonCancelled": "TaskRunCancelled",
    "TaskRunReasonTimedOut": "TaskRunTimeout",
    "TaskRunReasonStepFailed": None,
    "TaskRunReasonStepOOM": None,
    "TaskRunReasonPodEvicted": None,
}
"""The Tekton ``TaskRunReason`` constants ``conditions.go`` names, with their values
(Tekton's ``taskrun_types.go``); None where ``conditions.go`` always rewrites the reason
(to ``Failed``, ``StepOutOfMemory`` or ``PodEvicted``)."""

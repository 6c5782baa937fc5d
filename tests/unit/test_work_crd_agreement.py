"""``deploy/crds/work.yaml`` is the single source of a Work's shape: the core's parser
accepts exactly the Works the CRD's schema accepts, in both directions.

Hypothesis builds Work documents from a valid one by changing fields to values of every
kind — right and wrong types, in and out of bounds, matching and breaking patterns, unknown
fields — and checks that ``WorkResource.from_mapping`` and the CRD's ``openAPIV3Schema``
(with ``fieldValidation=Strict``: an unknown field is an error, as our client sends it)
agree on every one. The narrowings the CRD header documents (metadata keys, which the API
server's ObjectMeta validation checks; empty ``status.result`` keys; the template checks of
``workqueue_core.work.templates``, including each list item's apiVersion and kind, which
the CRD's constant-cost CEL rule leaves to the parser; a whole number written as a float,
``1.0``, which the API server takes for an integer and the parser refuses) are left out
of the generated
changes. A ``null`` is dropped by the API server when the field is not nullable, and the
parser reads it as absent: the two agree.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kube.schema import CrdSchema, load_crd
from workqueue_core.domain.errors import SpecError
from workqueue_core.work.resource import WorkResource

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "work.yaml"
SCHEMA = CrdSchema.from_crd(load_crd(CRD), "v1alpha1")

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "task"},
    "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "busybox"}]}}},
}
BASE: dict[str, Any] = {
    "apiVersion": "brokkr.io/v1alpha1",
    "kind": "Work",
    "metadata": {"name": "w-1", "namespace": "default"},
    "spec": {"workType": "job", "template": JOB},
}

TIMES = st.sampled_from(
    ["2026-12-03T10:00:00Z", "2026-12-03T10:00:00.5+01:00", "yesterday", "2026-13-40T99:00:00Z"]
)
WRONG = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    st.lists(st.integers(), max_size=2),
    st.none(),
)
NAMEISH = st.one_of(
    st.text(alphabet="abcXYZ019-_.:/ \t", max_size=70),
    st.from_regex(r"[a-zA-Z0-9_.-]{1,6}", fullmatch=True),
    st.sampled_from(["a_b", "a.b", "a-b", "a..b", "-a", "a-", "_a", "A", "a/b", "x.y/Z"]),
)


def ints(low: int, high: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(low - 3, high + 3), st.sampled_from([low, high]), WRONG)


def condition() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(NAMEISH, st.sampled_from(["Ready", "example.com/Done"]), WRONG),
            "status": st.one_of(st.sampled_from(["True", "False", "Unknown", "true"]), WRONG),
            "reason": st.one_of(NAMEISH, st.sampled_from(["Applied", "Back_off,1:x"]), WRONG),
            "message": st.one_of(st.text(max_size=20), WRONG),
            "lastTransitionTime": st.one_of(TIMES, WRONG),
            "observedGeneration": ints(0, 10),
            "unknownField": st.just("x"),
        },
    )


CHANGES: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("metadata", "name"): st.one_of(NAMEISH, st.just("a" * 254)),
    ("spec", "workType"): st.one_of(NAMEISH, st.just("a" * 51), WRONG),
    ("spec", "maxRetries"): ints(0, 100),
    ("spec", "claimTimeout"): ints(1, 604_800),
    ("spec", "workId"): st.one_of(NAMEISH, st.just("x" * 254), WRONG),
    ("spec", "attempt"): ints(0, 5),
    ("spec", "template"): st.one_of(
        st.just([JOB]),
        st.just([]),
        st.just({"kind": "Job"}),
        st.just("a Job"),
    ),
    ("spec", "unknownField"): st.just(1),
    ("status", "phase"): st.one_of(
        st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Done", ""]), WRONG
    ),
    ("status", "retries"): ints(0, 5),
    ("status", "message"): st.one_of(st.text(max_size=10), WRONG),
    ("status", "startTime"): st.one_of(TIMES, WRONG),
    ("status", "completionTime"): st.one_of(TIMES, WRONG),
    ("status", "nextRetryTime"): st.one_of(TIMES, WRONG),
    ("status", "observedGeneration"): ints(0, 5),
    ("status", "result"): st.one_of(
        st.dictionaries(
            st.sampled_from(["digest", "image"]), st.one_of(st.text(max_size=5), WRONG)
        ),
        WRONG,
    ),
    ("status", "conditions"): st.one_of(st.lists(condition(), max_size=3), WRONG),
    ("status", "unknownField"): st.just(True),
    ("unknownTop",): st.just({}),
}


@st.composite
def works(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    paths = draw(st.lists(st.sampled_from(sorted(CHANGES)), min_size=1, max_size=2, unique=True))
    for path in paths:
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = draw(CHANGES[path])
    return document


def parser_accepts(document: dict[str, Any]) -> bool:
    try:
        WorkResource.from_mapping(copy.deepcopy(document))
    except SpecError:
        return False
    return True


def crd_accepts(document: dict[str, Any]) -> bool:
    pruned = copy.deepcopy(document)
    if SCHEMA.prune(pruned):
        return False  # fieldValidation=Strict: an unknown field is refused
    return not SCHEMA.errors(pruned)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(works())
def test_the_parser_accepts_exactly_what_the_crd_accepts(document: dict[str, Any]) -> None:
    assert parser_accepts(document) == crd_accepts(document), document


def test_the_base_work_is_valid_both_ways() -> None:
    assert parser_accepts(BASE)
    assert crd_accepts(BASE)

"""The Roles of deploy/workqueue grant exactly what the processes request, both directions.

The controller and the agent run as real processes started with their Deployment's
``args`` and environment (``--kubeconfig`` added: there is no in-cluster service account
here), each with its own bearer token, against the fake API server, which logs every
request. The flows, with the controller Deployment's two replicas (a leader and a standby):
a job Work retried to Succeeded, a build Work to Succeeded, a stuck Job
and a stuck BuildRun stopped for ``NoProgress`` (delete, cancel patch) and retried, then
through a broker a job item and a build item claimed by the agent, a job item cancelled in
the broker (the agent deletes its Work), finished Works deleted after ``--work-ttl``, and
the processes stopped with SIGTERM (the leader releases its Lease, the standby takes it
over, then releases it in turn).

Each logged request becomes (verb, apiGroup, resource[/subresource]) by the rules of the
API server's request-info resolver; ``RbacRule.allows`` decides as the RBAC authorizer
does (``*``, subresources named ``resource/sub``, ``resource/*`` and ``*/sub``). Every
request must be allowed by its process's Role, and every (verb, group, resource) a Role
grants must have been requested by some flow, unless ``UNUSED_GRANTS`` says why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
import yaml
from aiohttp import web

from e2e.broker_support import BrokerProcess, broker_on, free_port
from support.kube import FakeKube, RequestRecord, serve_shipwright
from support.kube.works import build_work, job_work
from workqueue_core.domain.models import ExecutionRecord, SubmitRequest, Targeting, WorkStatus
from workqueue_core.domain.retry import RetryPolicy
from workqueue_core.work.claim_work import WORK_ID_LABEL
from workqueue_http.client import BrokerClient

pytestmark = pytest.mark.anyio

MANIFESTS = Path(__file__).resolve().parents[3] / "deploy" / "workqueue"
NS = "default"  # the pod's namespace (downward API) in this test
BOUND = 60.0
IDENTITIES = ("controller", "agent")

UNUSED_GRANTS: dict[str, dict[tuple[str, str, str], str]] = {"controller": {}, "agent": {}}
"""Grants no flow exercises, with the reason they are still needed (none today)."""


# --- requests as RBAC sees them ------------------------------------------------------------


@attrs.frozen(order=True)
class Access:
    """One request as the RBAC authorizer sees it."""

    verb: str
    group: str
    resource: str  # "works" or "works/status"

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}.{self.group or 'core'}"


def access_of(method: str, path: str, query: Mapping[str, str]) -> Access | None:
    """The (verb, group, resource) of a request; None for a non-resource URL.

    As the API server's ``RequestInfoFactory``: ``/api/v1/…`` is the core group,
    ``/apis/GROUP/VERSION/…`` the others; ``namespaces/NS/`` prefixes namespaced resources;
    then ``RESOURCE[/NAME[/SUBRESOURCE]]``. GET is ``get`` on a name, ``list`` on a
    collection, ``watch`` with ``watch=true``; POST ``create``, PUT ``update``, PATCH
    ``patch``, DELETE ``delete`` on a name and ``deletecollection`` on a collection.
    """
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # namespaces/NS/RESOURCE…; "namespaces[/NS]" alone is the resource
    if not rest or len(rest) > 3:
        return None
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    named = len(rest) >= 2
    watch = query.get("watch", "").lower() in ("1", "true")
    if method == "GET":
        verb = "get" if named else ("watch" if watch else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return Access(verb, group, resource)


@attrs.frozen
class RbacRule:
    """One PolicyRule of a Role (resource rules only)."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    @classmethod
    def of(cls, rule: Mapping[str, Any]) -> RbacRule:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        return cls(tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule["verbs"]))

    def allows(self, access: Access) -> bool:
        """As ``rbac.RuleAllows``: group, verb and resource (or subresource) all match."""
        base, _, sub = access.resource.partition("/")
        resource_ok = any(
            r == "*" or r == access.resource or (bool(sub) and r in (f"{base}/*", f"*/{sub}"))
            for r in self.resources
        )
        return (
            ("*" in self.api_groups or access.group in self.api_groups)
            and ("*" in self.verbs or access.verb in self.verbs)
            and resource_ok
        )

    def grants(self) -> set[tuple[str, str, str]]:
        """Every (verb, group, resource) named; wildcards are refused (least privilege)."""
        named = (*self.api_groups, *self.resources, *self.verbs)
        assert not any("*" in n for n in named), f"a wildcard grants more than is used: {self}"
        return {(v, g, r) for v in self.verbs for g in self.api_groups for r in self.resources}


def manifest(name: str) -> list[dict[str, Any]]:
    """The objects of ``deploy/workqueue/NAME.yaml`` (``workqueue-NAME`` is accepted too)."""
    path = MANIFESTS / f"{name.removeprefix('workqueue-')}.yaml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def role_rules(name: str) -> list[RbacRule]:
    [role] = [d for d in manifest(name) if d["kind"] == "Role" and d["metadata"]["name"] == name]
    return [RbacRule.of(rule) for rule in role["rules"]]


def allowed(rules: Iterable[RbacRule], access: Access) -> bool:
    return any(rule.allows(access) for rule in rules)


# the matcher itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis/brokkr.io/v1alpha1/namespaces/ns/works", {}, ("list", "brokkr.io", "works")),
        (
            "GET",
            "/apis/brokkr.io/v1alpha1/works",
            {"watch": "true"},
            ("watch", "brokkr.io", "works"),
        ),
        ("GET", "/apis/batch/v1/namespaces/ns/jobs/j", {}, ("get", "batch", "jobs")),
        ("POST", "/apis/batch/v1/namespaces/ns/jobs", {}, ("create", "batch", "jobs")),
        (
            "PUT",
            "/apis/brokkr.io/v1alpha1/namespaces/ns/works/w/status",
            {},
            ("update", "brokkr.io", "works/status"),
        ),
        (
            "PATCH",
            "/apis/shipwright.io/v1beta1/namespaces/n/buildruns/r",
            {},
            ("patch", "shipwright.io", "buildruns"),
        ),
        (
            "DELETE",
            "/apis/brokkr.io/v1alpha1/namespaces/ns/works/w",
            {},
            ("delete", "brokkr.io", "works"),
        ),
        ("DELETE", "/apis/batch/v1/namespaces/ns/jobs", {}, ("deletecollection", "batch", "jobs")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("get", "", "pods/log")),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "namespaces")),
        ("GET", "/api/v1/namespaces", {"watch": "1"}, ("watch", "", "namespaces")),
    ],
)
def test_requests_map_to_the_verbs_the_api_server_authorizes(
    method: str, path: str, query: dict[str, str], expected: tuple[str, str, str]
) -> None:
    assert access_of(method, path, query) == Access(*expected)


def test_non_resource_urls_are_not_resource_requests() -> None:
    for path in ("/version", "/apis", "/apis/brokkr.io", "/apis/brokkr.io/v1alpha1", "/api"):
        assert access_of("GET", path, {}) is None


def test_rules_match_as_the_rbac_authorizer_does() -> None:
    works = RbacRule(("brokkr.io",), ("works",), ("get", "list"))
    assert works.allows(Access("get", "brokkr.io", "works"))
    assert not works.allows(Access("update", "brokkr.io", "works"))
    assert not works.allows(Access("get", "brokkr.io", "works/status"))  # not a subresource
    assert not works.allows(Access("get", "other.io", "works"))
    assert RbacRule(("brokkr.io",), ("works/*",), ("get",)).allows(
        Access("get", "brokkr.io", "works/status")
    )
    assert not RbacRule(("brokkr.io",), ("works/*",), ("get",)).allows(
        Access("get", "brokkr.io", "works")
    )
    assert RbacRule(("*",), ("*/status",), ("update",)).allows(
        Access("update", "batch", "jobs/status")
    )
    assert RbacRule(("",), ("*",), ("*",)).allows(Access("delete", "", "pods/log"))
    assert not RbacRule(("",), ("*",), ("*",)).allows(Access("delete", "batch", "jobs"))
    with pytest.raises(AssertionError, match="wildcard"):
        RbacRule(("",), ("*",), ("get",)).grants()


# --- the processes -------------------------------------------------------------------------


class AttributedKube(FakeKube):
    """The fake API server, also noting each request's bearer token (who sent it)."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: dict[int, str] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # the record is appended before the handler's first await: it takes this index
        authorization = request.headers.get("Authorization", "")
        self.callers[len(self.requests)] = authorization.removeprefix("Bearer ")
        return await super()._handle(request)

    def by(self, token: str) -> list[RequestRecord]:
        return [r for i, r in enumerate(self.requests) if self.callers.get(i) == token]


def deployment_container(name: str) -> dict[str, Any]:
    [deployment] = [d for d in manifest(name) if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["workqueue"]
    return dict(container)


def deployment_env(container: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: values, Secret keys from ``secrets``, pod fields."""
    fields = {"metadata.namespace": NS, "metadata.name": "workqueue-pod-0"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKQUEUE_")}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in source:
            env[entry["name"]] = secrets[source["secretKeyRef"]["key"]]
        else:
            env[entry["name"]] = fields[source["fieldRef"]["fieldPath"]]
    return env


@attrs.define
class Process:
    """One ``workqueue`` process started as its Deployment says."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> None:
        assert self.process.poll() is None, f"{self.name} exited:\n{self.text()}"

    async def terminate(self) -> int:
        """SIGTERM, then wait without blocking the loop the fake API server answers on."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(30):
                while self.process.poll() is None:
                    await anyio.sleep(0.02)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start(
    name: str, extra: list[str], env: Mapping[str, str], workdir: Path, replica: str = ""
) -> Process:
    """The container of Deployment ``workqueue-NAME`` as a process, ``extra`` flags added."""
    container = deployment_container(f"workqueue-{name}")
    command = [sys.executable, "-m", "workqueue_cli", *container["args"], *extra]
    log = workdir / f"{name}{replica}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    return Process(name, process, log)


def kubeconfig_for(fake: FakeKube, token: str, path: Path) -> Path:
    fake.write_kubeconfig(path)
    config = yaml.safe_load(path.read_text())
    config["users"][0]["user"]["token"] = token
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def kube() -> AsyncIterator[AttributedKube]:
    async with AttributedKube() as fake:
        serve_shipwright(fake)
        yield fake
    assert fake.internal_errors == [], f"the fake API server failed: {fake.internal_errors!r}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with broker_on("sqlite", tmp_path / "broker", {"WORKQUEUE_SWEEP_INTERVAL": "200ms"}) as b:
        yield b


async def until(condition: Any, *processes: Process, seconds: float = BOUND) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            for process in processes:
                process.alive()
            await anyio.sleep(0.05)


def phase(fake: FakeKube, name: str) -> tuple[str | None, int | None]:
    status = (fake.get("works", NS, name) or {}).get("status") or {}
    return status.get("phase"), status.get("retries")


def holder(fake: FakeKube) -> str | None:
    lease = fake.get("leases", NS, "workqueue-controller")
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


def create_work(fake: FakeKube, body: dict[str, Any]) -> None:
    resource = fake.served(("brokkr.io", "works"))
    assert resource is not None
    fake.create_object(resource, NS, body)


async def controller_flows(fake: AttributedKube, controller: Process) -> None:
    """Works made directly (as ``kubectl apply`` would): retries, success, NoProgress stops."""
    create_work(fake, job_work("job-retried", "Failed", "Complete"))
    create_work(fake, build_work("build-ok"))
    await until(lambda: phase(fake, "job-retried") == ("Succeeded", 1), controller)
    await until(lambda: phase(fake, "build-ok") == ("Succeeded", 0), controller)
    # instances nobody picks up: after claimTimeout the controller stops them and retries
    fake.jobs.enabled = False
    fake.shipwright.enabled = False
    create_work(fake, job_work("job-stuck", max_retries=1, claim_timeout=1))
    create_work(fake, build_work("build-stuck", max_retries=1, claim_timeout=1))
    await until(lambda: fake.get("jobs", NS, "job-stuck-0") is not None, controller)
    await until(lambda: fake.get("buildruns", NS, "build-stuck-0") is not None, controller)
    fake.jobs.enabled = True  # instance 1 runs (instance 0 was never picked up)
    fake.shipwright.enabled = True  # it honours the cancel, and runs instance 1
    await until(lambda: phase(fake, "job-stuck") == ("Succeeded", 1), controller)
    await until(lambda: phase(fake, "build-stuck") == ("Succeeded", 1), controller)
    assert fake.count("delete", "jobs") >= 1
    assert fake.count("patch", "buildruns") >= 1


def fast_policy() -> RetryPolicy:
    return RetryPolicy(
        max_retries=2,
        base_delay=timedelta(seconds=0.05),
        multiplier=1.0,
        max_delay=timedelta(seconds=0.05),
    )


async def agent_flows(
    fake: AttributedKube, admin: BrokerClient, agent_id: Any, *processes: Process
) -> None:
    """Items claimed by the agent: a job and a build to success, a job cancelled mid-run."""

    async def submit(work_type: str, body: dict[str, Any]) -> Any:
        request = SubmitRequest(
            work_type=work_type,
            spec=yaml.safe_dump(body),
            targeting=Targeting.agents(agent_id),
            retry_policy=fast_policy(),
        )
        return (await admin.submit(request)).item.id

    async def ended(work_id: Any) -> ExecutionRecord:
        with anyio.fail_after(BOUND):
            while True:
                state = await admin.get(work_id)
                if isinstance(state, ExecutionRecord):
                    return state
                for process in processes:
                    process.alive()
                await anyio.sleep(0.05)

    def works_of(work_id: Any) -> list[dict[str, Any]]:
        return [
            w
            for w in fake.objects("works", NS)
            if w["metadata"].get("labels", {}).get(WORK_ID_LABEL) == str(work_id)
        ]

    job = await submit("job", job_work("item", retry_policy=None))
    build = await submit("build", build_work("item", retry_policy=None))
    assert (await ended(job)).status is WorkStatus.SUCCEEDED
    assert (await ended(build)).status is WorkStatus.SUCCEEDED
    cancelled = await submit("job", job_work("item", "never", retry_policy=None))
    await until(
        lambda: any((w.get("status") or {}).get("phase") == "Running" for w in works_of(cancelled)),
        *processes,
    )
    await admin.cancel(cancelled)
    await until(lambda: not works_of(cancelled), *processes)
    # the finished items' Works go after --work-ttl
    await until(lambda: not works_of(job) and not works_of(build), *processes)


async def test_the_roles_grant_exactly_what_the_controller_and_agent_request(
    kube: AttributedKube, broker: BrokerProcess, tmp_path: Path
) -> None:
    health = free_port()
    controller_kubeconfig = kubeconfig_for(kube, "controller", tmp_path / "controller.kubeconfig")
    controller_env = deployment_env(deployment_container("workqueue-controller"), {})
    controller = start(
        "controller",
        [
            *("--kubeconfig", str(controller_kubeconfig)),
            *("--health-host", "127.0.0.1", "--health-port", str(health)),
        ],
        controller_env,
        tmp_path,
    )
    standby: Process | None = None
    agent: Process | None = None
    try:
        await until(lambda: '"reconciling"' in controller.text(), controller)
        # the second replica of the Deployment stands by for the Lease
        standby = start(
            "controller",
            [
                *("--kubeconfig", str(controller_kubeconfig)),
                *("--identity", "workqueue-pod-1", "--health-port", "0"),
            ],
            controller_env,
            tmp_path,
            replica="-standby",
        )
        async with httpx.AsyncClient() as http:
            for path in ("/healthz", "/readyz"):  # the probes' paths on the probes' port
                with anyio.fail_after(BOUND):
                    while (await http.get(f"http://127.0.0.1:{health}{path}")).status_code != 200:
                        await anyio.sleep(0.1)
        await controller_flows(kube, controller)

        async with BrokerClient(broker.url, broker.admin_token) as admin:
            issued = await admin.register_agent("deploy-agent")
            env = deployment_env(
                deployment_container("workqueue-agent"), {"agent-token": issued.token}
            )
            env.update(
                {
                    "WORKQUEUE_URL": broker.url,  # the Service's URL in the cluster
                    "WORKQUEUE_HEARTBEAT_INTERVAL": "300ms",
                    "WORKQUEUE_CLAIM_WAIT": "500ms",
                }
            )
            agent_kubeconfig = kubeconfig_for(kube, "agent", tmp_path / "agent.kubeconfig")
            agent_health = free_port()
            agent = start(
                "agent",
                [
                    *("--kubeconfig", str(agent_kubeconfig), "--work-ttl", "1s"),
                    *("--health-host", "127.0.0.1", "--health-port", str(agent_health)),
                ],
                env,
                tmp_path,
            )
            # the probes' paths on the probes' port: ready once its informer has listed
            async with httpx.AsyncClient() as http:
                for path in ("/healthz", "/readyz"):
                    url = f"http://127.0.0.1:{agent_health}{path}"
                    with anyio.fail_after(BOUND):
                        while True:
                            agent.alive()
                            try:
                                if (await http.get(url)).status_code == 200:
                                    break
                            except httpx.TransportError:
                                pass  # not listening yet
                            await anyio.sleep(0.1)
            await agent_flows(kube, admin, issued.agent.id, controller, standby, agent)
        assert await agent.terminate() == 0, agent.text()
        assert '"reconciling"' not in standby.text()  # it stood by
        # the leader releases the Lease on SIGTERM; the standby takes it over
        assert await controller.terminate() == 0, controller.text()
        await until(lambda: holder(kube) == "workqueue-pod-1", standby)
        assert await standby.terminate() == 0, standby.text()
    finally:
        for process in (agent, standby, controller):
            if process is not None:
                await process.terminate()
    assert holder(kube) == "", "the last leader did not release its Lease"

    logged = {who: kube.by(who) for who in IDENTITIES}
    assert len(kube.requests) == sum(len(r) for r in logged.values()), "a request by nobody"
    used: dict[str, set[Access]] = {}
    for who, records in logged.items():
        used[who] = set()
        for record in records:
            access = access_of(record.method, record.path, record.query)
            assert access is not None, f"{who}: a non-resource request {record.path}"
            assert access.verb == record.verb, record  # the fake's verb agrees
            used[who].add(access)

    for who in IDENTITIES:
        rules = role_rules(f"workqueue-{who}")
        denied = sorted(str(a) for a in used[who] if not allowed(rules, a))
        assert denied == [], f"the {who} Role forbids requests the {who} makes: {denied}"
        granted = set().union(*(rule.grants() for rule in rules))
        requested = {(a.verb, a.group, a.resource) for a in used[who]}
        unused = sorted(granted - requested - set(UNUSED_GRANTS[who]))
        assert unused == [], f"the {who} Role grants what no flow requested: {unused}"

"""The agent's configuration: flags over ``WORKQUEUE_…`` environment over a TOML file.

As the broker's (``workqueue_broker.config``): every setting has one name,
``--output-tail`` on the command line, ``WORKQUEUE_OUTPUT_TAIL`` in the environment,
``output_tail`` in the file's ``[agent]`` table (or at its top level). A bad value
raises ``ConfigError`` naming its source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from workqueue_broker.config import ConfigError, Setting, merge_settings
from workqueue_broker.parsers import (
    int_between,
    parse_boolean,
    parse_host,
    parse_path,
    seconds_between,
)
from workqueue_core.domain.limits import MAX_RESULT_BYTES, work_type_problem

__all__ = ["AGENT_SETTINGS", "AgentConfig", "ConfigError", "load_agent_config"]

DEFAULT_URL = "http://127.0.0.1:8080"
KUBERNETES_WORK_TYPES: tuple[str, ...] = ("build", "job")
"""The work types ``--kubernetes`` runs unless ``--work-types`` names others (those the
cluster serves)."""
DEFAULT_ADMIN_TOKEN_FILE = Path("workqueue-admin-token")
_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


def _url(text: str) -> str:
    value = text.strip()
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return value.rstrip("/")


def _secret(text: str) -> str:
    value = text.strip()
    if not value or not value.isascii() or any(c.isspace() for c in value):
        raise ValueError("must be printable ASCII without spaces")
    return value


def _name(text: str) -> str:
    value = text.strip()
    if not _NAME_RE.match(value):
        raise ValueError(
            "an agent name is 1-253 letters, digits, '.', '_' or '-', "
            f"starting and ending with a letter or digit; got {text!r}"
        )
    return value


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"labels look like key=value,key=value; got {part!r}")
        labels[key.strip()] = value.strip()
    return labels


def _work_types(text: str) -> tuple[str, ...]:
    types = tuple(sorted({t.strip() for t in text.split(",") if t.strip()}))
    if not types:
        raise ValueError("name at least one work type")
    for work_type in types:
        problem = work_type_problem(work_type)
        if problem is not None:
            raise ValueError(problem)
    return types


def _exit_codes(text: str) -> frozenset[int]:
    codes: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            code = int(part)
        except ValueError:
            raise ValueError(f"expected exit codes such as 2,126,127, got {part!r}") from None
        if not 1 <= code <= 255:
            raise ValueError(f"exit codes are 1..255, got {code}")
        codes.add(code)
    return frozenset(codes)


def _bytes(text: str) -> int:
    match = re.match(r"^\s*(\d+)\s*(k|kib|kb|b)?\s*$", text.lower())
    if match is None:
        raise ValueError(f"expected bytes such as 16384 or 16KiB, got {text!r}")
    value = int(match.group(1)) * (1024 if match.group(2) in ("k", "kib", "kb") else 1)
    if not 0 <= value <= MAX_RESULT_BYTES:
        raise ValueError(f"must be at most {MAX_RESULT_BYTES} bytes (the broker's result limit)")
    return value


def _k8s_name(text: str) -> str:
    value = text.strip()
    if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", value):
        raise ValueError(f"expected a Kubernetes name, got {text!r}")
    return value


def _local_retries(text: str) -> int | None:
    value = text.strip().lower()
    if value == "all":
        return None
    if not value.isdigit() or not 0 <= int(value) <= 100:
        raise ValueError(f"expected 'all' or a number of retries in 0..100, got {text!r}")
    return int(value)


def _log_level(text: str) -> str:
    value = text.strip().lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError(f"expected debug, info, warning or error, got {text!r}")
    return value


AGENT_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "url",
        _url,
        "the broker's URL (default http://127.0.0.1:$WORKQUEUE_PORT, or :8080)",
        "URL",
    ),
    Setting(
        "agent_token",
        _secret,
        "this agent's token (prefer the environment or --agent-token-file)",
        "TOKEN",
        secret=True,
    ),
    Setting(
        "agent_token_file",
        parse_path,
        "file holding this agent's token; with --register, where the issued token is kept "
        "(mode 0600; default ./workqueue-agent-NAME.token)",
        "PATH",
    ),
    Setting(
        "register",
        _name,
        "register this agent under NAME with the admin token on its first start "
        "(later starts reuse the token file)",
        "NAME",
    ),
    Setting(
        "admin_token",
        _secret,
        "the admin token --register uses (prefer the environment or the token file)",
        "TOKEN",
        secret=True,
    ),
    Setting(
        "admin_token_file",
        parse_path,
        "file holding the admin token for --register (default ./workqueue-admin-token)",
        "PATH",
    ),
    Setting("labels", _labels, "labels registered with --register: k=v,k=v", "LABELS"),
    Setting("work_types", _work_types, "work types to run (default shell)", "TYPES"),
    Setting("concurrency", int_between(1, 1000), "scripts at once (default 4)", "N"),
    Setting(
        "timeout",
        seconds_between(0.001, 30 * 86400),
        "bound of one run (default: the item's claim timeout)",
        "DURATION",
    ),
    Setting(
        "heartbeat_interval",
        seconds_between(0.05, 3600),
        "renew each claim's lease at least this often (always at least every third of "
        "the lease; default 30s)",
        "DURATION",
    ),
    Setting(
        "claim_wait",
        seconds_between(0, 30),
        "long-poll of each claim (default 2s)",
        "DURATION",
    ),
    Setting(
        "output_tail",
        _bytes,
        "bytes of a script's output kept as its result or failure message (default 16KiB)",
        "BYTES",
    ),
    Setting(
        "permanent_exit_codes",
        _exit_codes,
        "exit codes that fail an item for good (default 2,126,127)",
        "CODES",
    ),
    Setting(
        "grace_period",
        seconds_between(0, 86400),
        "on SIGTERM, how long running scripts may finish before they are killed and "
        "released (default 30s)",
        "DURATION",
    ),
    Setting(
        "kill_grace",
        seconds_between(0, 600),
        "between SIGTERM and SIGKILL of a script's process group (default 5s)",
        "DURATION",
    ),
    Setting("allow_root", parse_boolean, "run scripts even as root (default false)", "BOOL"),
    Setting("log_level", _log_level, "debug, info (default), warning, error", "LEVEL"),
    Setting(
        "health_host",
        parse_host,
        "address of /healthz and /readyz (default 127.0.0.1)",
        "HOST",
    ),
    Setting(
        "health_port",
        int_between(0, 65535),
        "port of /healthz and /readyz; 0 for none (default: none)",
        "PORT",
    ),
    Setting(
        "kubernetes",
        parse_boolean,
        "run Kubernetes work (build, job) as Work resources instead of local scripts "
        "(default false)",
        "BOOL",
    ),
    Setting(
        "kubeconfig",
        parse_path,
        "with --kubernetes: kubeconfig file (default: in-cluster, else ~/.kube/config)",
        "PATH",
    ),
    Setting("context", _k8s_name, "with --kubernetes: kubeconfig context", "NAME"),
    Setting(
        "namespace",
        _k8s_name,
        "with --kubernetes: namespace of the Works (default: default)",
        "NAME",
    ),
    Setting(
        "local_retries",
        _local_retries,
        "with --kubernetes: most retries a Work makes in the cluster before the item goes "
        "back to the broker; 'all' (default) is the item's whole remaining budget, 0 sends "
        "every retry back",
        "N",
    ),
    Setting(
        "controller",
        parse_boolean,
        "with --kubernetes: reconcile this agent's Works in this process (default true; "
        "--no-controller when a `workqueue controller` runs them)",
        "BOOL",
    ),
    Setting(
        "work_ttl",
        seconds_between(0, 7 * 86400),
        "with --kubernetes: how long a finished Work stays before the agent deletes it "
        "(default 5m)",
        "DURATION",
    ),
)
AGENT_SETTINGS_BY_NAME = {s.name: s for s in AGENT_SETTINGS}


@attrs.frozen
class AgentConfig:
    """Everything the agent process needs to start."""

    url: str = DEFAULT_URL
    agent_token: str | None = attrs.field(default=None, repr=False)
    agent_token_file: Path | None = None
    register: str | None = None
    admin_token: str | None = attrs.field(default=None, repr=False)
    admin_token_file: Path | None = None
    labels: dict[str, str] = attrs.field(factory=dict)
    work_types: tuple[str, ...] = ("shell",)
    concurrency: int = 4
    timeout: float | None = None
    heartbeat_interval: float = 30.0
    claim_wait: float = 2.0
    output_tail: int = 16_384
    permanent_exit_codes: frozenset[int] = frozenset({2, 126, 127})
    grace_period: float = 30.0
    kill_grace: float = 5.0
    allow_root: bool = False
    log_level: str = "info"
    health_host: str = "127.0.0.1"
    health_port: int = 0
    kubernetes: bool = False
    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    local_retries: int | None = None
    controller: bool = True
    work_ttl: float = 300.0

    @property
    def token_file(self) -> Path | None:
        """Where the agent's token is read (and, with ``register``, kept)."""
        if self.agent_token_file is not None:
            return self.agent_token_file
        if self.register is not None:
            return Path(f"workqueue-agent-{self.register}.token")
        return None


def load_agent_config(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> AgentConfig:
    """Merge flags, then environment, then file, then defaults, and check them."""
    values = merge_settings(
        AGENT_SETTINGS, flags, environ, config_file, "agent", "WORKQUEUE_AGENT_CONFIG"
    )
    if "url" not in values and environ.get("WORKQUEUE_PORT"):
        # as the CLI: a broker started here on WORKQUEUE_PORT
        values["url"] = _url(f"http://127.0.0.1:{environ['WORKQUEUE_PORT'].strip()}")
    if values.get("kubernetes") and "work_types" not in values:
        values["work_types"] = KUBERNETES_WORK_TYPES
    return AgentConfig(**values)

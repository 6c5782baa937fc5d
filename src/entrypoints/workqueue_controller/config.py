"""The controller's configuration: flags over ``WORKQUEUE_…`` environment over a TOML file.

The same rules as the broker's (``workqueue_broker.config``): ``--lease-name`` on the
command line, ``WORKQUEUE_LEASE_NAME`` in the environment, ``lease_name`` in the file's
``[controller]`` table. A bad value raises ``ConfigError`` naming its source.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import attrs

from workqueue_broker.config import LOG_FORMATS, LOG_LEVELS, ConfigError, Setting, merge_settings
from workqueue_broker.parsers import (
    int_between,
    one_of,
    parse_boolean,
    parse_host,
    parse_path,
    seconds_between,
)

__all__ = ["SETTINGS", "ConfigError", "ControllerConfig", "load_config"]


def _name(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 253 or any(c.isspace() for c in value):
        raise ValueError(f"expected a Kubernetes name, got {text!r}")
    return value


def _namespace(text: str) -> str | None:
    """A namespace; ``""`` or ``*`` for every namespace."""
    value = text.strip()
    return None if value in ("", "*") else _name(value)


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "kubeconfig",
        parse_path,
        "kubeconfig file (default: in-cluster, else ~/.kube/config)",
        "PATH",
    ),
    Setting("context", _name, "kubeconfig context (default: its current context)", "NAME"),
    Setting("namespace", _namespace, "namespace to watch; '*' for all (default: all)", "NAME"),
    Setting("concurrency", int_between(1, 256), "Works reconciled at once (default 4)", "N"),
    Setting(
        "status_delay",
        seconds_between(0, 60),
        "longest wait to write a running Work's progress; 0 writes at once (default 1s)",
        "DURATION",
    ),
    Setting("leader_elect", parse_boolean, "elect a leader on a Lease (default true)", "BOOL"),
    Setting("lease_name", _name, "the Lease's name (default workqueue-controller)", "NAME"),
    Setting(
        "lease_namespace",
        _name,
        "the Lease's namespace (default: --namespace, else default)",
        "NAME",
    ),
    Setting("identity", _name, "this replica's name in the Lease (default HOST-PID)", "NAME"),
    Setting("lease_duration", seconds_between(1, 3600), "lease duration (default 15s)", "DURATION"),
    Setting(
        "renew_deadline",
        seconds_between(0.5, 3600),
        "leader renew deadline (default 10s)",
        "DURATION",
    ),
    Setting(
        "retry_period",
        seconds_between(0.05, 600),
        "leader election retry period (default 2s)",
        "DURATION",
    ),
    Setting(
        "retry_base_delay",
        seconds_between(0, 86400),
        "backoff of a Work's first retry when it names none (default 60s)",
        "DURATION",
    ),
    Setting(
        "retry_max_delay",
        seconds_between(0, 7 * 86400),
        "longest backoff of a Work's retries when it names none (default 1h)",
        "DURATION",
    ),
    Setting(
        "health_host",
        parse_host,
        "address of /healthz, /readyz, /metrics (default 127.0.0.1)",
        "HOST",
    ),
    Setting(
        "health_port",
        int_between(0, 65535),
        "port of /healthz, /readyz, /metrics; 0 for none (default 8081)",
        "PORT",
    ),
    Setting("log_format", one_of(LOG_FORMATS), "auto (default), json or console", "FORMAT"),
    Setting("log_level", one_of(LOG_LEVELS), "debug, info (default), warning, error", "LEVEL"),
)


@attrs.frozen
class ControllerConfig:
    """Everything the controller process needs to start."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None
    concurrency: int = 4
    status_delay: float = 1.0
    leader_elect: bool = True
    lease_name: str = "workqueue-controller"
    lease_namespace: str | None = None
    identity: str = attrs.field(factory=_default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    retry_base_delay: timedelta = timedelta(seconds=60)
    retry_max_delay: timedelta = timedelta(hours=1)
    health_host: str = "127.0.0.1"
    health_port: int = 8081
    log_format: str = "auto"
    log_level: str = "info"

    def __attrs_post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ConfigError(
                "leader election needs retry_period < renew_deadline < lease_duration, got "
                f"{self.retry_period:g}s, {self.renew_deadline:g}s, {self.lease_duration:g}s"
            )

    @property
    def lease_namespace_or_default(self) -> str:
        """Where the Lease lives: ``lease_namespace``, else the watched one, else default."""
        return self.lease_namespace or self.namespace or "default"


def load_config(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> ControllerConfig:
    """Merge flags, environment, the file's ``[controller]`` table and the defaults."""
    values = merge_settings(SETTINGS, flags, environ, config_file, "controller")
    for name in ("retry_base_delay", "retry_max_delay"):
        if name in values:
            values[name] = timedelta(seconds=values[name])
    return ControllerConfig(**values)

"""``workqueue agent``: claim work from a broker and run it on this machine.

The composition root of the agent process: it finds its token (or registers with the
admin token and keeps the issued token in a file, mode 0600), builds a ``BrokerClient``
and a ``Worker`` whose runner is the local process runner, and runs it until a signal:
the first SIGTERM/SIGINT drains (no new claims; running scripts get the grace period,
then are killed and their claims released), a second stops at once (and releases).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import anyio

from workqueue_agent.config import DEFAULT_ADMIN_TOKEN_FILE, AgentConfig, ConfigError
from workqueue_agent.health import AgentHealth, run_worker, serve_health
from workqueue_agent.local import LocalOptions, LocalRunner
from workqueue_core.domain.models import Agent, AgentStatus
from workqueue_core.executor.runner import Runner
from workqueue_core.executor.worker import Worker, WorkerOptions
from workqueue_http.client import AuthError, BrokerClient

__all__ = ["AgentStartError", "read_token", "run", "write_token"]

log = logging.getLogger("workqueue.agent")


class AgentStartError(Exception):
    """The agent cannot start as configured (exit status 2); the message says why."""


def read_token(path: Path) -> str:
    """The first word of a token file."""
    try:
        words = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as error:
        raise AgentStartError(f"cannot read the token file {path}: {error}") from None
    if not words:
        raise AgentStartError(f"the token file {path} is empty")
    return words[0]


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to a new file readable by this user only (mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise AgentStartError(f"cannot create the token file {path}: {error.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")


def _admin_token(config: AgentConfig) -> str:
    if config.admin_token is not None:
        return config.admin_token
    path = config.admin_token_file or DEFAULT_ADMIN_TOKEN_FILE
    if not path.exists():
        raise AgentStartError(
            f"--register needs the admin token: give --admin-token-file (default {path}, "
            "not found) or WORKQUEUE_ADMIN_TOKEN"
        )
    return read_token(path)


async def agent_token(config: AgentConfig) -> str:
    """The agent's token: given, read from its file, or issued by registering now."""
    if config.agent_token is not None:
        return config.agent_token
    path = config.token_file
    if path is None:
        raise AgentStartError(
            "no agent token: give --agent-token-file, WORKQUEUE_AGENT_TOKEN, or "
            "--register NAME (with the admin token) to register on the first start"
        )
    if path.exists():
        return read_token(path)
    if config.register is None:
        raise AgentStartError(f"the agent token file {path} does not exist")
    async with BrokerClient(config.url, _admin_token(config), retries=3) as admin:
        issued = await admin.register_agent(config.register, config.labels)
    write_token(path, issued.token)
    log.info(
        "registered agent %s (%s); its token is in %s", issued.agent.name, issued.agent.id, path
    )
    return issued.token


def _check_user(config: AgentConfig) -> None:
    if config.kubernetes:
        return  # no script runs here: the work runs in the cluster
    if os.geteuid() == 0 and not config.allow_root:
        raise AgentStartError(
            "refusing to run scripts as root: whoever can submit work to this agent would "
            "run code as root (give --allow-root to do it anyway)"
        )


def build_worker(
    config: AgentConfig, client: BrokerClient, agent: Agent, runner: Runner | None = None
) -> Worker:
    """The worker that claims for ``agent``: with ``runner``, or running scripts with the
    local runner."""
    if runner is None:
        runner = LocalRunner(
            LocalOptions(
                work_types=config.work_types,
                timeout=config.timeout,
                output_tail=config.output_tail,
                permanent_exit_codes=config.permanent_exit_codes,
                kill_grace=config.kill_grace,
            )
        )
    options = WorkerOptions(
        concurrency=config.concurrency,
        batch=min(config.concurrency, 100),
        claim_wait=config.claim_wait,
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
        agent_heartbeat_interval=min(30.0, max(config.heartbeat_interval, 1.0)),
    )
    return Worker(client, name=agent.name, agent_id=agent.id, runner=runner, options=options)


async def serve(config: AgentConfig) -> int:
    """Run the agent until a signal; 0 after a clean stop."""
    _check_user(config)
    health = AgentHealth()
    async with serve_health(config.health_host, config.health_port, health):
        await _serve(config, health)
    return 0


async def _serve(config: AgentConfig, health: AgentHealth) -> None:
    token = await agent_token(config)
    async with BrokerClient(config.url, token, retries=5) as client:
        agent = await client.whoami()
        if agent.status is not AgentStatus.ACTIVE:
            log.warning("agent %s is %s: it claims nothing", agent.name, agent.status.value)
        log.info(
            "agent %s (%s) runs %s from %s, %d at once",
            agent.name,
            agent.id,
            ",".join(config.work_types),
            config.url,
            config.concurrency,
        )
        if config.kubernetes:
            from workqueue_agent.kubernetes import serve_kubernetes

            worker = await serve_kubernetes(
                config,
                client,
                agent,
                lambda runner: build_worker(config, client, agent, runner),
                health,
            )
        else:
            worker = build_worker(config, client, agent)
            await run_worker(worker, health)
        stats = worker.stats
        log.info(
            "agent %s stopped: %d claimed, %d succeeded, %d retried, %d failed, %d released",
            agent.name,
            stats.claimed,
            stats.succeeded,
            stats.retried,
            stats.failed,
            stats.released,
        )


def run(config: AgentConfig) -> int:
    """The ``workqueue agent`` command: configure logging and serve."""
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.log_level != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    try:
        return anyio.run(serve, config)
    except (AgentStartError, ConfigError) as error:
        print(f"workqueue agent: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        refused = _auth_error(error)
        if refused is None or refused.status != 401:
            raise
        print(
            f"workqueue agent: error: the broker refused this agent's token (401: "
            f"{refused.detail}): it was revoked or rotated, or is not this broker's; "
            "check --agent-token-file or WORKQUEUE_AGENT_TOKEN",
            file=sys.stderr,
        )
        return 1


def _auth_error(error: BaseException) -> AuthError | None:
    """The ``AuthError`` in ``error`` (possibly inside exception groups), if any."""
    if isinstance(error, AuthError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _auth_error(inner)
            if found is not None:
                return found
    return None

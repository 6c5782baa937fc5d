"""The client commands: each turns parsed arguments into ``BrokerClient`` calls and output.

They run against a running broker (``--url``/``WORKQUEUE_URL``) with a token
(``--token``/``WORKQUEUE_TOKEN``, ``--token-file``/``WORKQUEUE_TOKEN_FILE``, or the
``./workqueue-admin-token`` a zero-configuration broker writes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from workqueue_broker.parsers import parse_duration
from workqueue_cli import render
from workqueue_core.domain.models import (
    AgentStatus,
    Cursor,
    LogQuery,
    SubmitRequest,
    Targeting,
    WorkQuery,
    WorkStatus,
)
from workqueue_core.domain.retry import RetryPolicy

MAX_SPEC_READ = 64 * 1_048_576


class UsageError(Exception):
    """Input the CLI refuses before calling the broker (exit status 2)."""


def parse_uuid(text: str, what: str = "id") -> UUID:
    """A UUID, or ``UsageError`` naming the bad value."""
    try:
        return UUID(text)
    except ValueError:
        raise UsageError(f"{what} must be a UUID, got {text!r}") from None


def parse_pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``k=v`` arguments as a mapping."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must look like key=value, got {value!r}")
        pairs[key] = val
    return pairs


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (UTC when no offset is given)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"expected an ISO 8601 time such as 2030-01-31T12:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_spec(source: str, stdin: TextIO) -> str:
    """The spec text from a file, or from standard input for ``-``."""
    if source == "-":
        return stdin.read(MAX_SPEC_READ)
    try:
        with Path(source).open(encoding="utf-8") as handle:
            return handle.read(MAX_SPEC_READ)
    except OSError as error:
        raise UsageError(f"cannot read the spec file {source}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the spec file {source} is not UTF-8 text") from None


def targeting_from(args: argparse.Namespace) -> Targeting:
    """``--agent``, ``--selector`` and ``--everyone`` as one ``Targeting``."""
    agent_ids = [parse_uuid(a, "--agent") for a in args.agent or []]
    if args.everyone and args.selector is not None:
        raise UsageError("give --selector or --everyone, not both")
    if not agent_ids and args.selector is None and not args.everyone:
        raise UsageError("say who may run the work: --selector, --agent ID or --everyone")
    if args.everyone:
        return Targeting(agent_ids=frozenset(agent_ids), selector=Targeting.everyone().selector)
    if args.selector is not None:
        selector = Targeting.labels(args.selector).selector
        return Targeting(agent_ids=frozenset(agent_ids), selector=selector)
    return Targeting.agents(*agent_ids)


def submit_request(args: argparse.Namespace, stdin: TextIO) -> SubmitRequest:
    """The request ``workqueue submit`` sends."""
    policy: dict[str, Any] = {}
    if args.max_retries is not None:
        policy["max_retries"] = args.max_retries
    if args.base_delay is not None:
        base = _duration(args.base_delay, "--base-delay")
        policy["base_delay"] = base
        policy["max_delay"] = max(base, RetryPolicy().max_delay)
    extra: dict[str, Any] = {}
    if args.claim_timeout is not None:
        extra["claim_timeout"] = _duration(args.claim_timeout, "--claim-timeout")
    targeting = targeting_from(args)
    return SubmitRequest(
        work_type=args.type,
        spec=read_spec(args.spec, stdin),
        targeting=targeting,
        retry_policy=RetryPolicy(**policy),
        priority=args.priority,
        not_before=parse_time(args.not_before) if args.not_before else None,
        idempotency_key=args.idempotency_key,
        correlation_id=args.correlation_id,
        labels=parse_pairs(args.label, "--label"),
        callback_url=args.callback_url,
        requires_approval=args.hold,
        **extra,
    )


def _duration(text: str, flag: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def _status(text: str | None) -> WorkStatus | None:
    if text is None:
        return None
    try:
        return WorkStatus(text.upper())
    except ValueError:
        names = ", ".join(s.value for s in WorkStatus)
        raise UsageError(f"--status must be one of {names}, got {text!r}") from None


Command = Callable[[Any, argparse.Namespace, TextIO], Awaitable[None]]


async def cmd_submit(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue submit``."""
    request = submit_request(args, sys.stdin)
    result = await client.submit(request)
    if args.json:
        render.write_json(out, result)
    else:
        render.submitted(out, result)


async def cmd_get(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue get ID``."""
    entry = await client.get(parse_uuid(args.id))
    if args.json:
        render.write_json(out, entry)
    else:
        render.work_detail(out, entry)


async def cmd_list(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue list``: the queue, or the execution log with ``--log``."""
    status = _status(args.status)
    claimed_by = parse_uuid(args.agent, "--agent") if args.agent else None
    use_log = args.log or (status is not None and status.is_terminal)
    entries: list[Any] = []
    after: Cursor | None = None
    filters = {
        "work_type": args.type,
        "status": status,
        "claimed_by": claimed_by,
        "limit": args.limit,
    }
    while True:  # with --all, page after page (keyset on the last entry's sort key)
        if use_log:
            page: list[Any] = await client.list_log(LogQuery(**filters, after=after))
        else:
            page = await client.list_work(WorkQuery(**filters, after=after))
        entries.extend(page)
        if not args.all or len(page) < args.limit:
            break
        last = page[-1]
        after = Cursor(last.finished_at if use_log else last.created_at, last.id)
    if args.json:
        render.write_json(out, entries)
    else:
        render.work_rows(out, entries)


async def cmd_cancel(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue cancel ID``."""
    record = await client.cancel(parse_uuid(args.id), reason=args.reason)
    if args.json:
        render.write_json(out, record)
    else:
        out.write(f"{record.id} {record.status.value}\n")


async def cmd_approve(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue approve ID``."""
    item = await client.approve(parse_uuid(args.id))
    if args.json:
        render.write_json(out, item)
    else:
        out.write(f"{item.id} {item.status.value}\n")


async def cmd_requeue(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue requeue ID``."""
    item = await client.requeue(parse_uuid(args.id))
    if args.json:
        render.write_json(out, item)
    else:
        out.write(f"{item.id} {item.status.value}\n")


async def cmd_events(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue events ID``: the timeline."""
    events = await client.events(parse_uuid(args.id))
    if args.json:
        render.write_json(out, events)
    else:
        render.event_rows(out, events)


async def cmd_stats(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue stats``."""
    stats = await client.stats()
    if args.json:
        render.write_json(out, stats)
    else:
        render.stats_rows(out, stats)


async def cmd_agents_register(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents register NAME``: prints the agent's token, this once."""
    issued = await client.register_agent(
        args.name,
        labels=parse_pairs(args.label, "--label"),
        annotations=parse_pairs(args.annotation, "--annotation"),
    )
    if args.json:
        render.write_json(out, issued)
    else:
        out.write(f"id:    {issued.agent.id}\n")
        out.write(f"token: {issued.token}\n")
        out.write("(the token is shown only now; the broker keeps only its hash)\n")


async def cmd_agents_list(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents list``."""
    status = None
    if args.status is not None:
        try:
            status = AgentStatus(args.status.upper())
        except ValueError:
            names = ", ".join(s.value for s in AgentStatus)
            raise UsageError(f"--status must be one of {names}, got {args.status!r}") from None
    agents = await client.list_agents(status)
    if args.json:
        render.write_json(out, agents)
    else:
        render.agent_rows(out, agents)


async def find_agent_id(client: Any, name_or_id: str) -> UUID:
    """The id of the agent named ``name_or_id`` (or that id itself)."""
    try:
        return UUID(name_or_id)
    except ValueError:
        pass
    for agent in await client.list_agents():
        if agent.name == name_or_id:
            return UUID(str(agent.id))
    raise UsageError(f"no agent is named {name_or_id!r}")


async def cmd_agents_rotate(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents token rotate NAME``: a new token, shown once; the old one is dead."""
    issued = await client.rotate_agent_token(await find_agent_id(client, args.name))
    if args.json:
        render.write_json(out, issued)
    else:
        out.write(f"id:    {issued.agent.id}\n")
        out.write(f"token: {issued.token}\n")
        out.write("(the old token no longer works; this one is shown only now)\n")


async def cmd_agents_revoke(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents revoke NAME``: INACTIVE, and its token gets 401 from now on."""
    agent = await client.revoke_agent(await find_agent_id(client, args.name))
    if args.json:
        render.write_json(out, agent)
    else:
        out.write(f"{agent.id} {agent.status.value} (its token no longer works)\n")


async def cmd_agents_get(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents get NAME|ID``."""
    agent = await client.get_agent(await find_agent_id(client, args.id))
    if args.json:
        render.write_json(out, agent)
    else:
        render.agent_detail(out, agent)


async def cmd_agents_drain(client: Any, args: argparse.Namespace, out: TextIO) -> None:
    """``workqueue agents drain ID``."""
    agent = await client.drain_agent(parse_uuid(args.id))
    if args.json:
        render.write_json(out, agent)
    else:
        out.write(f"{agent.id} {agent.status.value}\n")

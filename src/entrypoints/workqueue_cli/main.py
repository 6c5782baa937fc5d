"""The ``workqueue`` command: the broker, migrations, and a client of a running broker.

Exit status: 0 on success, 1 when the broker refused or could not be reached, 2
for input the command refuses itself. Every error is one line on stderr, never a
traceback (set ``WORKQUEUE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from workqueue_agent.config import AGENT_SETTINGS
from workqueue_broker.config import SETTINGS, load_config
from workqueue_broker.parsers import parse_boolean
from workqueue_cli import commands
from workqueue_cli.commands import UsageError

DEFAULT_TOKEN_FILE = Path("workqueue-admin-token")
_BOOLEAN_SETTINGS = frozenset({"migrate"})


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_url(environ: os._Environ[str] | dict[str, str]) -> str:
    """``WORKQUEUE_URL``, else the local broker on ``WORKQUEUE_PORT`` (8080)."""
    if environ.get("WORKQUEUE_URL"):
        return environ["WORKQUEUE_URL"]
    return f"http://127.0.0.1:{environ.get('WORKQUEUE_PORT') or 8080}"


def _client_options() -> argparse.ArgumentParser:
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("broker connection")
    group.add_argument(
        "--url",
        help="the broker's URL (env WORKQUEUE_URL; default http://127.0.0.1:$WORKQUEUE_PORT "
        "or :8080)",
    )
    group.add_argument(
        "--token",
        help="an admin or agent token (env WORKQUEUE_TOKEN; prefer the environment or "
        "--token-file)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        help="file whose first line is the token (env WORKQUEUE_TOKEN_FILE; default "
        "./workqueue-admin-token when it exists)",
    )
    group.add_argument(
        "--timeout", type=float, default=35.0, help="seconds per request (default 35)"
    )
    parent.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parent


def _add_broker(sub: Any) -> None:
    broker = sub.add_parser(
        "broker",
        help="run the broker (HTTP API + store + maintenance)",
        description="Run the broker. Each flag can also be set by the environment variable "
        "shown, or in a TOML file given by --config; flags win over the environment, which "
        "wins over the file.",
    )
    broker.add_argument("--config", type=Path, help="TOML file of settings (env WORKQUEUE_CONFIG)")
    for setting in SETTINGS:
        if setting.name in _BOOLEAN_SETTINGS:
            broker.add_argument(
                setting.flag,
                dest=setting.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{setting.help} [env {setting.env}]",
            )
        else:
            broker.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.metavar,
                help=f"{setting.help} [env {setting.env}]",
            )
    broker.set_defaults(run=_run_broker)


def _add_settings(parser: argparse.ArgumentParser, settings: Sequence[Any]) -> None:
    """One flag per setting; booleans as ``--x`` / ``--no-x``."""
    for setting in settings:
        if setting.parse is parse_boolean:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{setting.help} [env {setting.env}]",
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.metavar,
                help=f"{setting.help} [env {setting.env}]",
            )


def _flags(args: argparse.Namespace, settings: Sequence[Any]) -> dict[str, str | None]:
    flags: dict[str, str | None] = {}
    for setting in settings:
        value = getattr(args, setting.name)
        if isinstance(value, bool):
            value = "true" if value else "false"
        flags[setting.name] = value
    return flags


def _add_controller(sub: Any) -> None:
    from workqueue_controller.config import SETTINGS as CONTROLLER_SETTINGS

    controller = sub.add_parser(
        "controller",
        help="run the Work controller on a Kubernetes cluster",
        description="Reconcile brokkr.io/v1alpha1 Work resources: apply their templates, "
        "retry them under one budget, write their status. Flags can also be set by the "
        "environment variable shown, or in the [controller] table of a TOML file given by "
        "--config; flags win over the environment, which wins over the file.",
    )
    controller.add_argument(
        "--config", type=Path, help="TOML file of settings (env WORKQUEUE_CONFIG)"
    )
    _add_settings(controller, CONTROLLER_SETTINGS)
    controller.set_defaults(run=_run_controller)


def _run_controller(args: argparse.Namespace) -> int:
    from workqueue_controller.config import SETTINGS as CONTROLLER_SETTINGS
    from workqueue_controller.config import load_config as load_controller_config

    config = load_controller_config(_flags(args, CONTROLLER_SETTINGS), os.environ, args.config)
    try:
        from workqueue_controller.process import run
    except ImportError as error:
        raise UsageError(
            "the controller needs the 'controller' extra "
            f"(pip install 'workqueue[controller]'): {error}"
        ) from None
    return run(config)


def _add_work_commands(sub: Any, client: argparse.ArgumentParser) -> None:
    submit = sub.add_parser(
        "submit",
        parents=[client],
        help="submit work",
        description="Submit work: the spec comes from a file, or from standard input with -.",
    )
    submit.add_argument("spec", help="spec file, or - for standard input")
    submit.add_argument("--type", required=True, help="work type, e.g. job, build, test")
    submit.add_argument(
        "--selector", help="label selector of eligible agents, e.g. 'gpu=true,zone in (a,b)'"
    )
    submit.add_argument(
        "--agent", action="append", metavar="ID", help="an eligible agent's id (repeatable)"
    )
    submit.add_argument("--everyone", action="store_true", help="every active agent is eligible")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    submit.add_argument("--max-retries", type=int, help="retry budget (default 3)")
    submit.add_argument("--base-delay", help="backoff before the first retry (default 60s)")
    submit.add_argument("--claim-timeout", help="lease length of a claim (default 1h)")
    submit.add_argument("--not-before", help="not claimable before this ISO 8601 time")
    submit.add_argument("--hold", action="store_true", help="hold until `workqueue approve`")
    submit.add_argument("--idempotency-key", help="a second submit with it returns the first")
    submit.add_argument("--correlation-id", help="ties related work together in events")
    submit.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="metadata label (repeatable)"
    )
    submit.add_argument("--callback-url", help="URL notified when the work finishes")
    submit.set_defaults(handler=commands.cmd_submit)

    get = sub.add_parser("get", parents=[client], help="show one work item or its log record")
    get.add_argument("id", help="work item id")
    get.set_defaults(handler=commands.cmd_get)

    listing = sub.add_parser(
        "list",
        parents=[client],
        help="list queued work, or the execution log",
        description="List queued work (HELD, PENDING, CLAIMED), or with --log (or a terminal "
        "--status) the execution log.",
    )
    listing.add_argument("--type", help="only this work type")
    listing.add_argument("--status", help="only this status, e.g. PENDING or FAILED")
    listing.add_argument("--agent", metavar="ID", help="only work claimed by this agent")
    listing.add_argument("--log", action="store_true", help="list the execution log")
    listing.add_argument(
        "--limit", type=int, default=100, help="at most this many (1-1000); with --all, per page"
    )
    listing.add_argument("--all", action="store_true", help="every match, page after page")
    listing.set_defaults(handler=commands.cmd_list)

    cancel = sub.add_parser("cancel", parents=[client], help="cancel unfinished work")
    cancel.add_argument("id", help="work item id")
    cancel.add_argument("--reason", default="", help="recorded in the timeline")
    cancel.set_defaults(handler=commands.cmd_cancel)

    approve = sub.add_parser("approve", parents=[client], help="release held work")
    approve.add_argument("id", help="work item id")
    approve.set_defaults(handler=commands.cmd_approve)

    requeue = sub.add_parser(
        "requeue", parents=[client], help="return failed work to the queue with a fresh budget"
    )
    requeue.add_argument("id", help="work item id")
    requeue.set_defaults(handler=commands.cmd_requeue)

    events = sub.add_parser("events", parents=[client], help="show a work item's timeline")
    events.add_argument("id", help="work item id")
    events.set_defaults(handler=commands.cmd_events)

    stats = sub.add_parser("stats", parents=[client], help="counts by work type and status")
    stats.set_defaults(handler=commands.cmd_stats)


def _add_agent_commands(sub: Any, client: argparse.ArgumentParser) -> None:
    agents = sub.add_parser("agents", help="register, list, show and drain agents")
    agent_sub = agents.add_subparsers(dest="agents_command", metavar="COMMAND", required=True)

    register = agent_sub.add_parser(
        "register", parents=[client], help="register an agent and print its token (once)"
    )
    register.add_argument("name", help="the agent's unique name")
    register.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="targeting label (repeatable)"
    )
    register.add_argument(
        "--annotation", action="append", metavar="KEY=VALUE", help="free annotation (repeatable)"
    )
    register.set_defaults(handler=commands.cmd_agents_register)

    listing = agent_sub.add_parser("list", parents=[client], help="list agents")
    listing.add_argument("--status", help="only ACTIVE, DRAINING or INACTIVE agents")
    listing.set_defaults(handler=commands.cmd_agents_list)

    get = agent_sub.add_parser(
        "get", parents=[client], help="show one agent (with when it was last seen)"
    )
    get.add_argument("id", metavar="NAME|ID", help="agent name or id")
    get.set_defaults(handler=commands.cmd_agents_get)

    drain = agent_sub.add_parser(
        "drain", parents=[client], help="stop an agent claiming; it finishes what it holds"
    )
    drain.add_argument("id", help="agent id")
    drain.set_defaults(handler=commands.cmd_agents_drain)

    revoke = agent_sub.add_parser(
        "revoke",
        parents=[client],
        help="revoke an agent: INACTIVE, its token gets 401 from now on",
    )
    revoke.add_argument("name", metavar="NAME|ID", help="agent name or id")
    revoke.set_defaults(handler=commands.cmd_agents_revoke)

    token = agent_sub.add_parser("token", help="manage an agent's token")
    token_sub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    rotate = token_sub.add_parser(
        "rotate",
        parents=[client],
        help="issue a new token (printed once); the old one gets 401 from now on",
    )
    rotate.add_argument("name", metavar="NAME|ID", help="agent name or id")
    rotate.set_defaults(handler=commands.cmd_agents_rotate)


def _add_agent(sub: Any) -> None:
    agent = sub.add_parser(
        "agent",
        help="run an agent: claim work from a broker and run it on this machine",
        description="Run an agent that claims `shell` work (or --work-types) and runs each "
        "item's spec as a script in a subprocess. Whoever can submit such work to this agent "
        "runs code as this user. With --kubernetes it runs `job` work as Work resources in a "
        "cluster instead. Each flag can also be set by the environment variable shown, "
        "or in the [agent] table of a TOML file given by --config.",
    )
    agent.add_argument(
        "--config", type=Path, help="TOML file of settings (env WORKQUEUE_AGENT_CONFIG)"
    )
    for setting in AGENT_SETTINGS:
        if setting.name in ("allow_root", "kubernetes"):
            agent.add_argument(
                setting.flag,
                dest=setting.name,
                action="store_const",
                const="true",
                help=f"{setting.help} [env {setting.env}]",
            )
        elif setting.name == "controller":
            agent.add_argument(
                setting.flag,
                dest=setting.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{setting.help} [env {setting.env}]",
            )
        else:
            agent.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.metavar,
                help=f"{setting.help} [env {setting.env}]",
            )
    agent.set_defaults(run=_run_agent)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(
        prog="workqueue",
        description="Run the workqueue broker, migrate its database, or talk to a running broker.",
        epilog="Client commands find the broker by --url / WORKQUEUE_URL and authenticate with "
        "--token / WORKQUEUE_TOKEN (or ./workqueue-admin-token). `workqueue COMMAND --help` "
        "describes each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_broker(sub)
    _add_agent(sub)
    _add_controller(sub)
    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument(
        "--database-url",
        help="sqlite:///PATH or postgresql://…?schema=NAME (env WORKQUEUE_DATABASE_URL; "
        "default sqlite:///./workqueue.db)",
    )
    migrate.set_defaults(run=_run_migrate)
    client = _client_options()
    _add_work_commands(sub, client)
    _add_agent_commands(sub, client)
    return parser


# --- running -----------------------------------------------------------------


def _run_broker(args: argparse.Namespace) -> int:
    flags: dict[str, str | None] = {}
    for setting in SETTINGS:
        value = getattr(args, setting.name)
        if isinstance(value, bool):
            value = "true" if value else "false"
        flags[setting.name] = value
    config = load_config(flags, os.environ, args.config)
    from workqueue_broker.stores import parse_database_url

    parse_database_url(config.database_url)  # a bad URL is a usage error, before any logging
    try:
        from workqueue_broker.server import run
    except ImportError as error:
        raise UsageError(
            f"the broker needs the 'broker' extra (pip install 'workqueue[broker]'): {error}"
        ) from None
    return run(config)


def _run_agent(args: argparse.Namespace) -> int:
    from workqueue_agent.config import load_agent_config
    from workqueue_agent.main import run

    flags: dict[str, str | None] = {}
    for setting in AGENT_SETTINGS:
        value = getattr(args, setting.name)
        flags[setting.name] = str(value).lower() if isinstance(value, bool) else value
    return run(load_agent_config(flags, os.environ, args.config))


def _run_migrate(args: argparse.Namespace) -> int:
    from workqueue_broker.stores import migrate_store, parse_database_url

    url = (
        args.database_url or os.environ.get("WORKQUEUE_DATABASE_URL") or "sqlite:///./workqueue.db"
    )
    location = parse_database_url(url)
    version = asyncio.run(migrate_store(location))
    print(f"{location.describe()}: schema at version {version}")
    return 0


def resolve_token(args: argparse.Namespace) -> str:
    """The token from ``--token``, the environment, or a token file."""
    if args.token:
        return str(args.token)
    if os.environ.get("WORKQUEUE_TOKEN"):
        return os.environ["WORKQUEUE_TOKEN"]
    path = args.token_file
    if path is None and os.environ.get("WORKQUEUE_TOKEN_FILE"):
        path = Path(os.environ["WORKQUEUE_TOKEN_FILE"])
    if path is None and DEFAULT_TOKEN_FILE.exists():
        path = DEFAULT_TOKEN_FILE
    if path is None:
        raise UsageError(
            "no token: give --token, WORKQUEUE_TOKEN or --token-file "
            "(a broker started here without one writes ./workqueue-admin-token)"
        )
    try:
        lines = Path(path).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the token file {path}: {error}") from None
    if not lines:
        raise UsageError(f"the token file {path} is empty")
    return lines[0]


async def _run_client(args: argparse.Namespace) -> int:
    from workqueue_http.client import BrokerClient

    url = args.url or default_url(os.environ)
    token = resolve_token(args)
    async with BrokerClient(url, token, timeout=args.timeout, retries=2) as client:
        await args.handler(client, args, sys.stdout)
    return 0


def describe_error(error: BaseException, url: str) -> tuple[str, int]:
    """One line for an error, and the exit status."""
    from workqueue_cli.errors import explain

    return explain(error, url)


def command_name(args: argparse.Namespace) -> str:
    """``workqueue agents register``, ``workqueue agents token rotate``, ``workqueue get``…"""
    words = ["workqueue", args.command]
    for attribute in ("agents_command", "token_command"):
        word = getattr(args, attribute, None)
        if word:
            words.append(word)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    url = getattr(args, "url", None) or default_url(os.environ)
    try:
        if hasattr(args, "run"):
            return int(args.run(args))
        return asyncio.run(_run_client(args))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if os.environ.get("WORKQUEUE_DEBUG"):
            traceback.print_exc()
        message, status = describe_error(error, url)
        print(f"{command_name(args)}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    raise SystemExit(main())

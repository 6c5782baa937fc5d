"""The ``workqueue`` command against a real broker process (SQLite).

Commands run as real processes (``python -m workqueue_cli``) with the broker's
URL and admin token in ``WORKQUEUE_URL`` / ``WORKQUEUE_TOKEN``; ``--help`` and
configuration errors, which never reach a broker, run in-process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from broker_support import (
    BrokerProcess,
    cli_command,
    free_port,
    postgres_schema_url,
    running_broker,
)

from workqueue_cli.main import build_parser, main
from workqueue_core.domain.models import Failure
from workqueue_http.client import BrokerClient

SPEC = "steps:\n  - run: make test\n"

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    workdir = tmp_path_factory.mktemp("cli-broker")
    with running_broker(f"sqlite:///{workdir / 'cli.db'}", workdir) as process:
        yield process


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``workqueue ARGS`` as a process."""
    return subprocess.run(
        [*cli_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli(broker: BrokerProcess, tmp_path: Path) -> Cli:
    def run(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {"WORKQUEUE_URL": broker.url, "WORKQUEUE_TOKEN": broker.admin_token}
        return run_cli(*args, cwd=tmp_path, env={**base, **(env or {})}, stdin=stdin)

    return run


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_submit_get_list_events_cancel_approve(cli: Cli, tmp_path: Path) -> None:
    work_type = f"cli-{uuid.uuid4().hex[:8]}"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC)
    submitted = json.loads(
        ok(
            cli(
                *("submit", str(spec_file), "--type", work_type, "--selector", "gpu=true"),
                *("--label", "team=infra", "--priority", "3", "--json"),
            )
        )
    )
    from_file = submitted["item"]["id"]
    assert submitted["created"] is True
    assert submitted["item"]["status"] == "PENDING"
    assert submitted["item"]["targeting"]["selector"] == "gpu=true"

    plain = ok(cli("submit", "-", "--type", work_type, "--everyone", stdin="echo from stdin\n"))
    from_stdin, status = plain.split()
    assert status == "PENDING"
    uuid.UUID(from_stdin)

    item = json.loads(ok(cli("get", from_file, "--json")))
    assert item["spec"] == SPEC
    assert item["labels"] == {"team": "infra"}
    assert item["priority"] == 3
    shown = ok(cli("get", from_stdin))
    assert "status:" in shown and "PENDING" in shown
    assert "  echo from stdin" in shown

    listed = json.loads(ok(cli("list", "--type", work_type, "--json")))
    assert {entry["id"] for entry in listed} == {from_file, from_stdin}
    table = ok(cli("list", "--type", work_type)).splitlines()
    assert table[0].split()[:3] == ["ID", "TYPE", "STATUS"]
    assert len(table) == 3

    assert ok(cli("cancel", from_stdin, "--reason", "not needed")).split() == [
        from_stdin,
        "CANCELED",
    ]
    log = json.loads(ok(cli("list", "--log", "--type", work_type, "--json")))
    assert [(r["id"], r["status"]) for r in log] == [(from_stdin, "CANCELED")]
    events = ok(cli("events", from_stdin)).splitlines()
    assert "- -> PENDING" in events[1]
    assert "PENDING -> CANCELED" in events[2]
    assert "not needed" in events[2]
    timeline = json.loads(ok(cli("events", from_stdin, "--json")))
    assert [e["to_status"] for e in timeline] == ["PENDING", "CANCELED"]

    held = json.loads(
        ok(cli("submit", "-", "--type", work_type, "--everyone", "--hold", "--json", stdin="x"))
    )
    assert held["item"]["status"] == "HELD"
    assert ok(cli("approve", held["item"]["id"])).split()[1] == "PENDING"

    stats = json.loads(ok(cli("stats", "--json")))
    mine = {(s["status"], s["count"]) for s in stats if s["work_type"] == work_type}
    assert mine == {("PENDING", 2), ("CANCELED", 1)}


def test_agents_and_requeue(cli: Cli, broker: BrokerProcess) -> None:
    work_type = f"cli-{uuid.uuid4().hex[:8]}"
    name = f"builder-{work_type}"
    issued = json.loads(ok(cli("agents", "register", name, "--label", "gpu=true", "--json")))
    agent_id = issued["agent"]["id"]
    assert issued["token"].startswith("wq_")
    assert "token_hash" not in issued["agent"]
    assert "token:" in ok(cli("agents", "register", name + "-2"))

    agents = json.loads(ok(cli("agents", "list", "--json")))
    assert {"gpu": "true"} in [a["labels"] for a in agents if a["id"] == agent_id]
    assert name in ok(cli("agents", "list"))
    assert "gpu=true" in ok(cli("agents", "get", agent_id))

    submitted = json.loads(
        ok(cli("submit", "-", "--type", work_type, "--agent", agent_id, "--json", stdin="x"))
    )
    work_id = uuid.UUID(submitted["item"]["id"])

    async def claim_and_fail() -> None:
        async with BrokerClient(broker.url, issued["token"]) as agent:
            [item] = await agent.claim_next(uuid.UUID(agent_id), [work_type])
            assert item.id == work_id
            await agent.fail(item.token, item.claimed_by, Failure.permanent("InvalidInput"))  # type: ignore[arg-type]

    anyio.run(claim_and_fail)
    failed = json.loads(ok(cli("list", "--status", "failed", "--type", work_type, "--json")))
    assert [r["id"] for r in failed] == [str(work_id)]
    assert ok(cli("requeue", str(work_id))).split() == [str(work_id), "PENDING"]

    drained = json.loads(ok(cli("agents", "drain", agent_id, "--json")))
    assert drained["status"] == "DRAINING"


def test_broker_refusals_are_one_line_with_a_nonzero_status(
    cli: Cli, tmp_path: Path, broker: BrokerProcess
) -> None:
    unknown = str(uuid.uuid4())
    assert unknown in one_line_error(cli("get", unknown), 1)
    # Refused by the broker (422): a build spec that is not a Work resource.
    assert "spec" in one_line_error(
        cli("submit", "-", "--type", "build", "--everyone", stdin="kind: Nope\n"), 2
    )
    assert "401" in one_line_error(cli("stats", env={"WORKQUEUE_TOKEN": "wq_wrong"}), 1)
    closed = f"http://127.0.0.1:{free_port()}"
    assert "cannot reach the broker" in one_line_error(cli("stats", "--url", closed), 1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["get", "not-a-uuid"], "must be a UUID"),
        (["submit", "-", "--type", "x"], "--everyone"),
        (["submit", "-", "--type", "x", "--selector", "gpu in ("], "selector"),
        (["submit", "-", "--type", "x", "--everyone", "--max-retries", "-1"], "max_retries"),
        (["submit", "missing.yaml", "--type", "x", "--everyone"], "spec file"),
        (["submit", "-", "--type", "x", "--everyone", "--not-before", "soon"], "ISO 8601"),
        (["list", "--status", "DONE"], "--status"),
        (["submit"], "required"),
        (["agents"], "required"),
    ],
)
def test_bad_input_is_one_line_with_status_2(
    args: list[str],
    expected: str,
    broker: BrokerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKQUEUE_URL", broker.url)
    monkeypatch.setenv("WORKQUEUE_TOKEN", broker.admin_token)
    monkeypatch.setattr("sys.stdin", io.StringIO("x"))
    try:
        status = main(args)
    except SystemExit as error:  # argparse's own usage errors
        status = int(error.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_a_missing_token_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./workqueue-admin-token here
    monkeypatch.delenv("WORKQUEUE_TOKEN", raising=False)
    monkeypatch.delenv("WORKQUEUE_TOKEN_FILE", raising=False)
    assert main(["stats"]) == 2
    assert "no token" in capsys.readouterr().err


def test_agent_tokens_act_only_for_their_agent(cli: Cli) -> None:
    a = json.loads(ok(cli("agents", "register", f"a-{uuid.uuid4().hex[:8]}", "--json")))
    # An agent token cannot list the queue (admin only): 403, one line.
    line = one_line_error(cli("list", env={"WORKQUEUE_TOKEN": a["token"]}), 1)
    assert "403" in line


def _subcommands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommands(sub, (*prefix, name))


def test_help_works_for_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    commands = [(), *_subcommands(build_parser())]
    assert ("agents", "register") in commands
    assert len(commands) >= 16
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: workqueue {' '.join(command)}".rstrip())


def test_broker_configuration_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--port", "99999"]) == 2
    assert main(["broker", "--database-url", "mysql://x"]) == 2
    assert main(["broker", "--retention", "forever"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert "--port" in lines[0] and "65535" in lines[0]
    assert "mysql" in lines[1]
    assert "--retention" in lines[2]


def test_migrate_sqlite_and_postgres(tmp_path: Path) -> None:
    done = run_cli(
        "migrate", "--database-url", f"sqlite:///{tmp_path / 'm.db'}", cwd=tmp_path, env={}
    )
    assert done.returncode == 0, done.stderr
    assert "schema at version" in done.stdout
    with postgres_schema_url() as url:
        done = run_cli("migrate", cwd=tmp_path, env={"WORKQUEUE_DATABASE_URL": url})
        assert done.returncode == 0, done.stderr
        assert "schema at version" in done.stdout
        again = run_cli("migrate", "--database-url", url, cwd=tmp_path, env={})
        assert again.stdout == done.stdout  # idempotent


def test_list_all_follows_the_pages(cli: Cli) -> None:
    work_type = f"cli-pages-{uuid.uuid4().hex[:8]}"
    ids = [
        ok(cli("submit", "-", "--type", work_type, "--everyone", stdin=f"echo {n}\n")).split()[0]
        for n in range(5)
    ]
    one_page = json.loads(ok(cli("list", "--type", work_type, "--limit", "2", "--json")))
    assert [entry["id"] for entry in one_page] == ids[:2]
    every = json.loads(ok(cli("list", "--type", work_type, "--limit", "2", "--all", "--json")))
    assert [entry["id"] for entry in every] == ids  # oldest first, each once
    for work_id in ids[:3]:
        ok(cli("cancel", work_id))
    logged = json.loads(
        ok(cli("list", "--log", "--type", work_type, "--limit", "2", "--all", "--json"))
    )
    assert [entry["id"] for entry in logged] == ids[:3]


def test_list_says_when_nothing_matched(cli: Cli) -> None:
    work_type = f"none-{uuid.uuid4().hex[:8]}"
    assert ok(cli("list", "--type", work_type)) == "nothing matched\n"
    assert ok(cli("list", "--log", "--type", work_type)) == "nothing matched\n"
    assert json.loads(ok(cli("list", "--type", work_type, "--json"))) == []


def test_json_times_are_written_as_the_api_writes_them(cli: Cli) -> None:
    name = f"timed-{uuid.uuid4().hex[:8]}"
    ok(cli("agents", "register", name))
    [agent] = [a for a in json.loads(ok(cli("agents", "list", "--json"))) if a["name"] == name]
    assert agent["registered_at"].endswith("Z") and "+00:00" not in agent["registered_at"]
    submitted = json.loads(ok(cli("submit", "-", "--type", "t", "--everyone", "--json", stdin="x")))
    assert submitted["item"]["created_at"].endswith("Z")


def test_errors_name_the_whole_subcommand(
    broker: BrokerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKQUEUE_URL", broker.url)
    monkeypatch.setenv("WORKQUEUE_TOKEN", broker.admin_token)
    assert main(["agents", "register", "x", "--label", "no-equals"]) == 2
    assert main(["agents", "token", "rotate", "no-such-agent"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("workqueue agents register: error: --label")
    assert lines[1].startswith("workqueue agents token rotate: error: no agent is named")


def test_agent_configuration_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("WORKQUEUE_AGENT_TOKEN", "WORKQUEUE_AGENT_TOKEN_FILE", "WORKQUEUE_REGISTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKQUEUE_ALLOW_ROOT", "true")
    assert main(["agent", "--concurrency", "0"]) == 2
    assert main(["agent", "--permanent-exit-codes", "2,300"]) == 2
    assert main(["agent", "--output-tail", "1MiB"]) == 2
    assert main(["agent"]) == 2  # no token, nothing to register with
    assert main(["agent", "--register", "laptop"]) == 2  # no admin token here
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5, lines
    assert "--concurrency" in lines[0] and "1..1000" in lines[0]
    assert "--permanent-exit-codes" in lines[1] and "1..255" in lines[1]
    assert "--output-tail" in lines[2]
    assert "no agent token" in lines[3]
    assert "admin token" in lines[4]
    assert not (tmp_path / "workqueue-agent-laptop.token").exists()


def test_the_agent_refuses_to_run_as_root_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKQUEUE_ALLOW_ROOT", raising=False)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert main(["agent", "--agent-token", "wq_whatever"]) == 2
    assert "refusing to run scripts as root" in capsys.readouterr().err

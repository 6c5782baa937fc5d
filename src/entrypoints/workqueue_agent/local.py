"""The local process runner: each claimed item's spec runs as a script on this machine.

A ``Runner`` (``workqueue_core.executor.runner``) for ``workqueue agent``:

- the spec is written to a file in a fresh temporary directory and run by ``/bin/sh -e``,
  or, when its first line is a ``#!`` line, by the interpreter that line names (split on
  whitespace, the script's path appended), as the kernel runs a script;
- the working directory is a fresh empty temporary directory, removed afterwards;
- the process leads a new session (its own process group): a timeout, a cancelled item,
  a lost claim or the end of a stopping agent's grace period kill the whole group
  (SIGTERM, then SIGKILL after ``kill_grace``); processes left in the group by a
  finished script are killed too; the script is watched through a pidfd (Linux), so
  its pid, the group's id, is not reused while the group is signalled;
- the environment is the agent's without any ``WORKQUEUE_…`` variable (so not its
  token), plus ``WORKQUEUE_WORK_ID``, ``WORKQUEUE_WORK_TYPE``, ``WORKQUEUE_ATTEMPT`` and
  ``WORKQUEUE_CORRELATION_ID``;
- stdout and stderr go to one pipe, read as it comes: only the last ``output_tail``
  bytes are kept (memory stays bounded whatever the script prints);
- exit 0 → success with the tail as the result; an exit code in ``permanent_exit_codes``
  (default 2, 126, 127) → a permanent failure; another exit code, a signal or the
  timeout → a retryable failure. The failure message ends with the output's tail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import attrs

from workqueue_core.domain.limits import MAX_MESSAGE_BYTES, MAX_RESULT_BYTES
from workqueue_core.domain.models import Failure
from workqueue_core.executor.handlers import Job, Outcome, Success
from workqueue_core.executor.runner import TIMEOUT

__all__ = [
    "DEFAULT_PERMANENT_EXIT_CODES",
    "EXIT_CODE",
    "SIGNALLED",
    "LocalOptions",
    "LocalRunner",
    "OutputTail",
    "command_for",
]

log = logging.getLogger("workqueue.agent")

DEFAULT_PERMANENT_EXIT_CODES = frozenset({2, 126, 127})
"""Usage error, found but not executable, not found."""

EXIT_CODE = "ExitCode"
"""Reason of a failure by exit code (the message names the code)."""

SIGNALLED = "Signal"
"""Reason of a retryable failure of a script killed by a signal."""

DEFAULT_SHELL = ("/bin/sh", "-e")
READ_CHUNK = 65_536


class OutputTail:
    """The last ``limit`` bytes of a stream, in memory bounded by about twice that."""

    __slots__ = ("_buffer", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buffer = bytearray()

    def add(self, chunk: bytes) -> None:
        """Append ``chunk``, dropping what falls out of the tail."""
        self.total += len(chunk)
        if len(chunk) >= self.limit:
            self._buffer[:] = chunk[-self.limit :] if self.limit else b""
            return
        self._buffer += chunk
        if len(self._buffer) > 2 * self.limit:
            del self._buffer[: len(self._buffer) - self.limit]

    def text(self, limit: int | None = None) -> str:
        """The tail (at most ``limit`` bytes, default the tail's own) as text without NULs."""
        keep = min(self.limit, limit if limit is not None else self.limit)
        data = bytes(self._buffer[-keep:]) if keep else b""
        text = data.decode("utf-8", "replace").replace("\x00", "")
        encoded = text.encode("utf-8")
        if len(encoded) > keep:  # replacement characters grew it
            text = encoded[-keep:].decode("utf-8", "ignore")
        return text


def _exit_codes(_: object, __: attrs.Attribute[frozenset[int]], value: frozenset[int]) -> None:
    if 0 in value or any(not 1 <= code <= 255 for code in value):
        raise ValueError("permanent exit codes must be in 1..255")


@attrs.frozen
class LocalOptions:
    """How the local runner runs scripts. Durations are seconds.

    ``timeout``: bound of one run; None means the item's claim timeout.
    ``output_tail``: bytes of output kept (at most the broker's result limit).
    ``kill_grace``: between SIGTERM and SIGKILL of the process group.
    """

    work_types: tuple[str, ...] = ("shell",)
    timeout: float | None = None
    output_tail: int = 16_384
    permanent_exit_codes: frozenset[int] = attrs.field(
        default=DEFAULT_PERMANENT_EXIT_CODES, validator=_exit_codes
    )
    kill_grace: float = 5.0
    temp_root: str | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.output_tail <= MAX_RESULT_BYTES:
            raise ValueError(f"output_tail must be in 0..{MAX_RESULT_BYTES} bytes")


def command_for(spec: str, script: Path) -> list[str]:
    """The command that runs ``spec`` saved as ``script``: its ``#!`` line, or ``sh -e``."""
    first = spec.split("\n", 1)[0]
    if first.startswith("#!"):
        words = shlex.split(first[2:].strip())
        if words:
            return [*words, str(script)]
    return [*DEFAULT_SHELL, str(script)]


def script_environment(job: Job, base: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment without ``WORKQUEUE_…`` variables, plus the item's."""
    env = {k: v for k, v in base.items() if not k.upper().startswith("WORKQUEUE_")}
    env["WORKQUEUE_WORK_ID"] = str(job.id)
    env["WORKQUEUE_WORK_TYPE"] = job.work_type
    env["WORKQUEUE_ATTEMPT"] = str(job.attempt)
    env["WORKQUEUE_CORRELATION_ID"] = job.correlation_id or ""
    return env


class LocalRunner:
    """Runs ``shell`` items (or the configured work types) as local scripts."""

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self.started_pids: list[int] = []
        """Process ids of scripts started (most recent last; for logs and tests)."""

    @property
    def work_types(self) -> list[str]:
        return sorted(self.options.work_types)

    async def run(self, job: Job) -> Outcome:
        options = self.options
        timeout = (
            options.timeout
            if options.timeout is not None
            else job.item.claim_timeout.total_seconds()
        )
        root = Path(tempfile.mkdtemp(prefix="workqueue-", dir=options.temp_root))
        try:
            script = root / "script"
            workdir = root / "work"
            workdir.mkdir()
            script.write_text(job.spec, encoding="utf-8")
            script.chmod(0o700)
            return await self._run_script(job, command_for(job.spec, script), workdir, timeout)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    async def _run_script(
        self, job: Job, command: Sequence[str], workdir: Path, timeout: float
    ) -> Outcome:
        tail = OutputTail(self.options.output_tail)
        read_fd, write_fd = os.pipe()
        try:
            try:
                process = subprocess.Popen(
                    list(command),
                    cwd=workdir,
                    env=script_environment(job, os.environ),
                    stdin=subprocess.DEVNULL,
                    stdout=write_fd,
                    stderr=write_fd,
                    start_new_session=True,
                )
            except OSError as error:  # the interpreter of a #! line is missing
                message = f"cannot start {command[0]}: {error.strerror}"
                return Failure.permanent(EXIT_CODE, message)
            finally:
                os.close(write_fd)  # the script's copy is the only writer left
            os.set_blocking(read_fd, False)
            # readable once the leader has exited, before it is reaped: its pid (the
            # group id) cannot be reused while we signal the group
            pidfd = os.pidfd_open(process.pid)
            try:
                return await self._supervise(job, process, pidfd, read_fd, tail, timeout)
            finally:
                os.close(pidfd)
        finally:
            os.close(read_fd)

    async def _supervise(
        self,
        job: Job,
        process: subprocess.Popen[bytes],
        pidfd: int,
        read_fd: int,
        tail: OutputTail,
        timeout: float,
    ) -> Outcome:
        self.started_pids.append(process.pid)
        log.info("work %s attempt %s: started process %s", job.id, job.attempt, process.pid)
        timed_out = True
        try:
            with anyio.move_on_after(timeout):
                await self._wait(process, pidfd, read_fd, tail)
                timed_out = False
        finally:
            # cancelled (claim lost, item cancelled, grace over) or timed out: kill the group
            with anyio.CancelScope(shield=True):
                await self._end_group(process, pidfd)
        if timed_out:
            message = f"the script ran longer than {timeout:g} s and was killed"
            return Failure.retryable(TIMEOUT, _with_tail(message, tail))
        return self._outcome(process.returncode, tail)

    async def _wait(
        self, process: subprocess.Popen[bytes], pidfd: int, read_fd: int, tail: OutputTail
    ) -> None:
        """Read the output until the script has exited, then reap it."""
        read_all = anyio.Event()

        async def read() -> None:
            await _read_into(read_fd, tail)
            read_all.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_readable(pidfd)
            # the script is done: processes it left in its group would hold the pipe
            _signal_group(process.pid, signal.SIGKILL)
            # one that left the group (setsid) may still hold it: read what is there,
            # then stop reading rather than wait for it
            with anyio.move_on_after(self.options.kill_grace):
                await read_all.wait()
            tg.cancel_scope.cancel()
        process.wait()  # exited already: reaps at once

    async def _end_group(self, process: subprocess.Popen[bytes], pidfd: int) -> None:
        """SIGTERM the group, SIGKILL it after the grace; reap the leader."""
        if process.returncode is not None:
            return  # ended and reaped by ``_wait``, its group killed then
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(self.options.kill_grace):
            await anyio.wait_readable(pidfd)
        _signal_group(process.pid, signal.SIGKILL)
        await anyio.wait_readable(pidfd)
        process.wait()

    def _outcome(self, code: int | None, tail: OutputTail) -> Outcome:
        if code == 0:
            return Success(tail.text(MAX_RESULT_BYTES) or None)
        if code is None or code < 0:
            name = _signal_name(-code) if code is not None else "?"
            return Failure.retryable(SIGNALLED, _with_tail(f"killed by signal {name}", tail))
        message = _with_tail(f"exit code {code}", tail)
        if code in self.options.permanent_exit_codes:
            return Failure.permanent(EXIT_CODE, message)
        return Failure.retryable(EXIT_CODE, message)


async def _read_into(fd: int, tail: OutputTail) -> None:
    """Read the non-blocking ``fd`` into ``tail`` until end of file."""
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            continue
        if not chunk:
            return
        tail.add(chunk)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _with_tail(message: str, tail: OutputTail) -> str:
    """``message`` and as much of the output's end as a failure message holds."""
    head = f"{message}; output ({tail.total} bytes) ends:\n" if tail.total else message
    room = MAX_MESSAGE_BYTES - len(head.encode("utf-8")) - 8
    return head + tail.text(max(0, room)) if tail.total else head

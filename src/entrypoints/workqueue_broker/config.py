"""The broker's configuration: flags over ``WORKQUEUE_…`` environment over a TOML file.

Every setting has one name: ``--sweep-interval`` on the command line,
``WORKQUEUE_SWEEP_INTERVAL`` in the environment, ``sweep_interval`` in the file.
Values are parsed and bounded here; a bad one raises ``ConfigError`` naming its
source, so the command can print one line and exit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs

from workqueue_broker.parsers import (
    int_between,
    one_of,
    parse_boolean,
    parse_duration,
    parse_host,
    parse_path,
    seconds_between,
)

ENV_PREFIX = "WORKQUEUE_"
DEFAULT_DATABASE_URL = "sqlite:///./workqueue.db"
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting is missing, malformed or out of bounds; the message names it."""


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _retention(text: str) -> timedelta:
    value = parse_duration(text)
    if value > timedelta(days=36_500):
        raise ValueError(f"must be at most 100 years, got {text!r}")
    return value


def _database_url(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _tokens(text: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in text.split(",") if t.strip())
    for token in tokens:
        check_admin_token(token)
    return tokens


MIN_ADMIN_TOKEN_LENGTH = 16


def check_admin_token(token: str) -> None:
    """Refuse tokens too short to be secrets, or that would break an HTTP header."""
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(f"admin tokens must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
    if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("admin tokens must be printable ASCII without spaces")


@attrs.frozen
class Setting:
    """One configuration setting: its name, how to parse it, and its help text."""

    name: str
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"
    secret: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable."""
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("host", parse_host, "address to listen on (default 127.0.0.1)", "HOST"),
    Setting("port", int_between(0, 65535), "port to listen on (default 8080)", "PORT"),
    Setting(
        "database_url",
        _database_url,
        "sqlite:///PATH, postgresql://… (?schema=NAME) or memory:// "
        f"(default {DEFAULT_DATABASE_URL})",
        "URL",
        secret=True,
    ),
    Setting(
        "admin_tokens",
        _tokens,
        "comma-separated admin tokens (prefer the environment or a token file to a flag)",
        "TOKENS",
        secret=True,
    ),
    Setting(
        "admin_token_file",
        parse_path,
        "file holding admin tokens, one per line (default: ./workqueue-admin-token, "
        "generated at the first start when no token is configured)",
        "PATH",
    ),
    Setting(
        "sweep_interval",
        seconds_between(0.05, 86400),
        "how often to sweep expired leases (default 5s)",
        "DURATION",
    ),
    Setting(
        "prune_interval",
        seconds_between(1, 7 * 86400),
        "how often to prune the execution log (default 1h)",
        "DURATION",
    ),
    Setting(
        "retention",
        _retention,
        "keep execution-log records and events this long (default 30d)",
        "DURATION",
    ),
    Setting(
        "callback_interval",
        seconds_between(0.05, 3600),
        "how often to deliver due completion callbacks (default 2s)",
        "DURATION",
    ),
    Setting("log_format", one_of(LOG_FORMATS), "auto (default), json or console", "FORMAT"),
    Setting("log_level", one_of(LOG_LEVELS), "debug, info (default), warning, error", "LEVEL"),
    Setting(
        "max_body_bytes",
        int_between(1024, 64 * 1_048_576),
        "largest request body accepted (default 1048576)",
        "BYTES",
    ),
    Setting(
        "migrate",
        parse_boolean,
        "apply database migrations at start (default true)",
        "BOOL",
    ),
    Setting(
        "shutdown_timeout",
        seconds_between(0, 300),
        "on SIGTERM/SIGINT, wait this long for requests in flight (default 10s)",
        "DURATION",
    ),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@attrs.frozen
class BrokerConfig:
    """Everything the broker process needs to start."""

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = attrs.field(default=DEFAULT_DATABASE_URL, repr=False)
    admin_tokens: tuple[str, ...] = attrs.field(default=(), repr=False)
    admin_token_file: Path | None = None
    sweep_interval: float = 5.0
    prune_interval: float = 3600.0
    retention: timedelta = timedelta(days=30)
    callback_interval: float = 2.0
    log_format: str = "auto"
    log_level: str = "info"
    max_body_bytes: int = 1_048_576
    migrate: bool = True
    shutdown_timeout: float = 10.0


def read_toml_table(path: Path, table: str) -> dict[str, Any]:
    """The ``[table]`` of a TOML file (or the whole file when it has no such table), with
    ``-`` in keys read as ``_``."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read the config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"the config file {path} is not valid TOML: {error}") from None
    section = data.get(table, data)
    if not isinstance(section, dict):
        raise ConfigError(f"the config file {path}: [{table}] must be a table")
    return {str(k).replace("-", "_"): v for k, v in section.items() if k != table}


def merge_settings(
    settings: tuple[Setting, ...],
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    config_file: Path | None,
    table: str,
    config_env: str = ENV_PREFIX + "CONFIG",
) -> dict[str, Any]:
    """Each setting's parsed value from the first source that has it: flags, then
    environment, then the file's ``[table]``; settings no source names are left out.

    ``config_file`` defaults to the file ``config_env`` names. A bad value raises
    ``ConfigError`` naming its source; so does a setting the file has but ``settings``
    does not.
    """
    if config_file is None and environ.get(config_env):
        config_file = Path(environ[config_env])
    from_file = read_toml_table(config_file, table) if config_file is not None else {}
    known = {s.name for s in settings}
    unknown = sorted(set(from_file) - known)
    if unknown:
        raise ConfigError(f"the config file {config_file} has unknown settings: {unknown}")
    values: dict[str, Any] = {}
    for setting in settings:
        raw: object
        flag_value = flags.get(setting.name)
        if flag_value is not None:
            raw, source = flag_value, setting.flag
        elif environ.get(setting.env) is not None:
            raw, source = environ[setting.env], setting.env
        elif setting.name in from_file:
            raw, source = from_file[setting.name], f"{setting.name} in {config_file}"
        else:
            continue
        try:
            values[setting.name] = setting.parse(_as_text(raw))
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    return values


def load_config(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> BrokerConfig:
    """Merge the sources (flags, then environment, then file, then defaults) and check them.

    ``flags`` maps setting names to the raw flag text (None when not given);
    ``config_file`` defaults to ``WORKQUEUE_CONFIG`` when that is set.
    """
    return BrokerConfig(**merge_settings(SETTINGS, flags, environ, config_file, "broker"))

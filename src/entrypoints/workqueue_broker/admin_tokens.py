"""Where the broker's admin tokens come from.

Configured tokens (``WORKQUEUE_ADMIN_TOKENS``, ``--admin-tokens``, ``admin_tokens``
in the file) and a token file are read as given. With neither, the first start
generates one token into ``./workqueue-admin-token`` (mode 0600) and later starts
read it back: the zero-configuration broker is never open, and the token is never
printed or logged, only the file's path.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import attrs

from workqueue_broker.config import BrokerConfig, ConfigError, check_admin_token

DEFAULT_TOKEN_FILE = Path("workqueue-admin-token")
ADMIN_TOKEN_PREFIX = "wqadmin_"


@attrs.frozen
class AdminTokens:
    """The admin tokens and, when one was generated at this start, the file it went to."""

    tokens: tuple[str, ...] = attrs.field(repr=False)
    generated_file: Path | None = None
    source: str = ""


def new_admin_token() -> str:
    """A fresh admin token: 256 bits from ``secrets``."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def read_token_file(path: Path) -> tuple[str, ...]:
    """Tokens from a file, one per line; blank lines and ``#`` comments are ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the admin token file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the admin token file {path} is not UTF-8 text") from None
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ConfigError(f"the admin token file {path} holds no token")
    for token in tokens:
        try:
            check_admin_token(token)
        except ValueError as error:
            raise ConfigError(f"the admin token file {path}: {error}") from None
    return tokens


def write_new_token_file(path: Path) -> str:
    """Create ``path`` (it must not exist) with mode 0600 holding a new token."""
    token = new_admin_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def resolve_admin_tokens(config: BrokerConfig, workdir: Path | None = None) -> AdminTokens:
    """The admin tokens the broker accepts, generating the default file when needed."""
    tokens = list(config.admin_tokens)
    if config.admin_token_file is not None:
        tokens.extend(read_token_file(config.admin_token_file))
        return AdminTokens(tuple(tokens), None, str(config.admin_token_file))
    if tokens:
        return AdminTokens(tuple(tokens), None, "configuration")
    path = (workdir or Path.cwd()) / DEFAULT_TOKEN_FILE
    if path.exists():
        return AdminTokens(read_token_file(path), None, str(path))
    try:
        token = write_new_token_file(path)
    except FileExistsError:  # another process created it between the check and here
        return AdminTokens(read_token_file(path), None, str(path))
    except OSError as error:
        raise ConfigError(f"cannot create the admin token file {path}: {error.strerror}") from None
    return AdminTokens((token,), path, str(path))

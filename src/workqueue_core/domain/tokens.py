"""Agent and admin tokens: stored only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

TOKEN_PREFIX = "wq_"


def hash_token(token: str) -> str:
    """The stored form of a token: SHA-256 of a high-entropy secret, hex-encoded."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """True when ``token`` hashes to ``token_hash``; constant time in the hash."""
    return hmac.compare_digest(hash_token(token), token_hash)


def hashes_equal(a: str, b: str) -> bool:
    """Constant-time equality of two stored hashes."""
    return hmac.compare_digest(a, b)

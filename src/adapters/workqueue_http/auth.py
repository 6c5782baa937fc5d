"""Bearer-token authentication and the permission rules of DESIGN §7.

Admin tokens come from configuration in clear and are kept only as hashes; agent
tokens are resolved by the service (the store holds their hashes). Every
comparison is between hashes, in constant time. Tokens are never logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from uuid import UUID

import attrs
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from workqueue_core.domain.errors import InvalidInput, WorkqueueError
from workqueue_core.domain.models import Agent
from workqueue_core.domain.tokens import hash_token
from workqueue_core.service.broker import BrokerService

MAX_TOKEN_LENGTH = 512

SEEN_INTERVAL = 10.0
"""An authenticated agent's ``last_seen_at`` is written at most this often (seconds):
any agent call counts as seen, but a store write per claim or completion would cost
the hot path."""

log = logging.getLogger("workqueue.http")


@attrs.frozen
class Caller:
    """Who is calling: an admin, or one agent."""

    agent: Agent | None = None

    @property
    def is_admin(self) -> bool:
        return self.agent is None

    @property
    def actor(self) -> str:
        """The actor recorded in events for steps this caller takes."""
        return "admin" if self.agent is None else f"agent:{self.agent.id}"


ADMIN = Caller()


class Authenticator:
    """Resolves ``Authorization: Bearer <token>`` headers to callers."""

    def __init__(
        self,
        service: BrokerService,
        admin_tokens: Sequence[str],
        *,
        seen_interval: float = SEEN_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        self._admin_hashes = tuple(hash_token(t) for t in admin_tokens if t)
        self._seen_interval = seen_interval
        self._monotonic = monotonic
        self._seen: dict[UUID, float] = {}

    async def caller(self, authorization: str | None) -> Caller:
        """The caller a header names; ``NotAuthorizedException`` (401) when none."""
        token = _bearer(authorization)
        digest = hash_token(token)
        is_admin = False
        for admin_hash in self._admin_hashes:  # no early exit: time does not tell which
            is_admin |= hmac.compare_digest(digest, admin_hash)
        if is_admin:
            return ADMIN
        agent = await self._service.authenticate_agent(token)
        if agent is None:
            raise NotAuthorizedException(detail="the bearer token is not valid")
        await self._seen_now(agent)
        return Caller(agent)

    async def _seen_now(self, agent: Agent) -> None:
        """Touch the agent, unless this process did within ``seen_interval``."""
        now = self._monotonic()
        last = self._seen.get(agent.id)
        if last is not None and now - last < self._seen_interval:
            return
        self._seen[agent.id] = now  # before the write: concurrent calls do not repeat it
        try:
            await self._service.agent_heartbeat(agent.id)
        except WorkqueueError as error:
            log.debug("recording that agent %s was seen failed: %s", agent.id, error)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthorizedException(detail="an Authorization: Bearer <token> header is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise NotAuthorizedException(detail="the Authorization header must be 'Bearer <token>'")
    return token


def require_admin(caller: Caller) -> None:
    """Only an admin token may do this."""
    if not caller.is_admin:
        raise PermissionDeniedException(detail="this operation needs an admin token")


def require_self(caller: Caller, agent_id: UUID) -> None:
    """An admin, or the agent ``agent_id`` itself."""
    if caller.agent is not None and caller.agent.id != agent_id:
        raise PermissionDeniedException(detail="an agent token acts only as its own agent")


def acting_agent(caller: Caller, agent_id: UUID | None) -> UUID:
    """The agent a claim-token request acts as: the caller's own, or the one an admin names."""
    if caller.agent is not None:
        if agent_id is not None and agent_id != caller.agent.id:
            raise PermissionDeniedException(detail="an agent token acts only as its own agent")
        return caller.agent.id
    if agent_id is None:
        raise InvalidInput("agent_id is required when an admin token acts for an agent")
    return agent_id

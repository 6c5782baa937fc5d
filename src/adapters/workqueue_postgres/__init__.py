"""PostgreSQL store: the production queue (psycopg 3, psycopg_pool).

``await PostgresStore.open(dsn, schema=...)`` gives a ``Store`` (work and agents)
whose ``notifier`` wakes claimers through LISTEN/NOTIFY; ``await migrate(dsn,
schema)`` brings a schema to the current version; ``workqueue_postgres.sql`` holds
the statements. See docs/postgres.md.
"""

from workqueue_postgres.notifier import PostgresNotifier, channel_for
from workqueue_postgres.schema import LATEST_VERSION, migrate
from workqueue_postgres.sql import Statements, statements
from workqueue_postgres.store import PostgresStore

__all__ = [
    "LATEST_VERSION",
    "PostgresNotifier",
    "PostgresStore",
    "Statements",
    "channel_for",
    "migrate",
    "statements",
]

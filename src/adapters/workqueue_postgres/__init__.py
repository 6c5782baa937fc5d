"""PostgreSQL store: the production queue (psycopg 3, psycopg_pool)."""

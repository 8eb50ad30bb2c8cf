"""Alembic's entry point: jitctl.broker.store.migrate() passes the connection it runs on."""

from __future__ import annotations

from alembic import context

from jitctl.broker.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment: run migrations on the connection the ledger hands over."""

from alembic import context

from lid_dask.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

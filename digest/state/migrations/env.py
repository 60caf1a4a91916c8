"""Alembic's entry point for digest's state database: always run on a connection digest opened."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite",
                  transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()

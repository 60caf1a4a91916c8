"""Alembic migrations of the state database (SQLite and PostgreSQL); run by state/migrate.py."""

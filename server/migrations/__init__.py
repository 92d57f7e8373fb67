"""Alembic migrations of the server schema (`server.schema`)."""

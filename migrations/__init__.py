"""Alembic migrations. Every schema change is a revision in versions/."""

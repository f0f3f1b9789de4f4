"""Alembic revisions (see cdl_gitlab.db.migrate)."""

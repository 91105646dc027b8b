"""Alembic environment and revisions, shipped inside the package so any install migrates."""

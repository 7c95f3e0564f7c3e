"""Revision scripts, oldest first (alembic reads them by file; the package makes them install)."""

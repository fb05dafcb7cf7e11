"""Schema m00X (placeholder while it is written)."""

from __future__ import annotations

from sqlite_utils import Database


def migrate(db: Database) -> None:
    """Nothing yet."""

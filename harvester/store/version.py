"""Whether a store is of this version's schema, told by reading it alone.

A reader (`status`, `query`, `show`, a notebook) only needs to know that the store has
had every migration of this version; loading the migrations to ask would import
sqlite-utils, and through it pandas and numpy where they are installed (a fifth of a
second every command paid, issue 24). `schema.migrations` is the list that runs;
MIGRATIONS names them here, and tests/store/test_schema.py checks that the two agree,
so a new migration cannot be left out of either.
"""

from __future__ import annotations

import sqlite3

MIGRATION_SET = "altmetric-harvester"
MIGRATIONS = (
    "m001_jobs_and_responses",
    "m002_tweet_quota",
    "m003_error_index",
    "m004_compressed_bodies",
    "m005_derived_tables",
    "m006_compact_mentions",
    "m007_tweet_charges",
    "m008_unused_indexes",
    "m009_aliases",
    "m010_response_endpoint",
    "m011_outputs_wide",
    "m012_one_job_per_output",
)
MIGRATIONS_TABLE = "_sqlite_migrations"


def table_names(conn: sqlite3.Connection) -> list[str]:
    """The store's tables (not its views), as sqlite-utils lists them."""
    sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return [name for (name,) in conn.execute(sql)]


def is_current(conn: sqlite3.Connection) -> bool:
    """Whether the store has had every migration this version knows."""
    applied = {
        name
        for (name,) in conn.execute(
            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", (MIGRATION_SET,)
        )
    }
    return applied.issuperset(MIGRATIONS)

"""Schema m007: the tweet ledger as one row per charge, `tweet_ledger` a view.

Before, `tweet_ledger` held a row per tweet ID keyed by the ID, so charging an answer's
IDs dirtied a random B-tree page per ID. Now `tweet_charges` holds a row per charge
(the IDs one `record` transaction charged, 8 bytes each, with its time), appended in order, and the
ledger of the writing connection answers "is this ID charged?" from memory
(`store.ledger`). The view keeps `tweet_ledger (tweet_id, charged_at_s)` for users'
queries.

Every old row moves: one old `record` charged all its IDs with one time, so the rows
are grouped by `charged_at_s` into one charge each.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator

from sqlite_utils import Database

from harvester.store.charged import distinct_sorted, ids_to_blob
from harvester.store.upgrade import UpgradeProgress

CREATE_CHARGES = (
    """CREATE TABLE tweet_charges (
        id INTEGER PRIMARY KEY,
        charged_at_s REAL NOT NULL,
        id_count INTEGER NOT NULL,
        tweet_ids BLOB NOT NULL
    )""",
    # Pruning, and the window's count (the index covers it: no row is read).
    "CREATE INDEX tweet_charges_charged ON tweet_charges (charged_at_s, id_count)",
)
# The IDs are stored 8 bytes each, big-endian (`charged.STORED_ID`): a third of their
# JSON text. SQLite has no function from bytes to an integer, so the view reads each
# ID's 16 hex digits and adds them up; a position table, as long as the longest charge,
# walks the IDs. Slow for SQL (a few seconds for 2,000,000 IDs) but plain SQL, which
# the sqlite3 shell and Datasette read; `SELECT sum(id_count) FROM tweet_charges` is
# the fast count.
_HEX_VALUE = " + ".join(
    f"((instr('0123456789ABCDEF', substr(hex_id, {digit + 1}, 1)) - 1) << {60 - 4 * digit})"
    for digit in range(16)
)
CREATE_VIEW = f"""CREATE VIEW tweet_ledger AS
    WITH RECURSIVE position (i) AS (
        SELECT 0
        UNION ALL
        SELECT i + 1 FROM position WHERE i + 1 < (SELECT max(id_count) FROM tweet_charges)
    ),
    charged (hex_id, charged_at_s) AS (
        SELECT hex(substr(c.tweet_ids, 8 * p.i + 1, 8)), c.charged_at_s
        FROM tweet_charges AS c JOIN position AS p ON p.i < c.id_count
    )
    SELECT {_HEX_VALUE} AS tweet_id, charged_at_s FROM charged"""


def migrate(db: Database) -> None:
    for statement in CREATE_CHARGES:
        db.execute(statement)
    _move_ledger_rows(db)
    db.execute("DROP INDEX tweet_ledger_charged")
    db.execute("DROP TABLE tweet_ledger")
    db.execute(CREATE_VIEW)


def _move_ledger_rows(db: Database) -> None:
    """One `tweet_charges` row per distinct `charged_at_s` of the old table, in time
    order, its IDs sorted (the old index gives them in that order)."""
    total = int(db.execute("SELECT count(*) FROM tweet_ledger").fetchone()[0])
    with UpgradeProgress("tweet ledger", total) as progress:
        for charged_at_s, tweet_ids in _charges(db):
            db.execute(
                "INSERT INTO tweet_charges (charged_at_s, id_count, tweet_ids) VALUES (?, ?, ?)",
                (charged_at_s, len(tweet_ids), ids_to_blob(distinct_sorted(tweet_ids))),
            )
            progress.advance(len(tweet_ids))


def _charges(db: Database) -> Iterator[tuple[float, list[int]]]:
    rows = db.execute(
        "SELECT charged_at_s, tweet_id FROM tweet_ledger ORDER BY charged_at_s, tweet_id"
    )
    for charged_at_s, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        yield charged_at_s, [tweet_id for _, tweet_id in group]

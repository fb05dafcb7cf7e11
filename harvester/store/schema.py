"""The store's schema, as sqlite-utils migrations: each runs once per store, in its
own transaction, in the order written here. Never edit one that has shipped; add the
next.

m001-m003: the job queue, responses, the tweet ledger. m004: bodies compressed apart
from the responses that point at them (one body per distinct answer). m005: the
derived tables researchers query (`harvester derive --rebuild` rebuilds them). m006:
tweets in a compact table of their own, `mentions` a view (`upgrade_mentions`). m007:
the tweet ledger as one row per charge, `tweet_ledger` a view (`upgrade_ledger`). m008:
two indexes of `outputs` and `counts` that no query used, dropped. m009: `aliases`,
every identifier an answer names its output by (`store.aliases`), and the degraded
answers' index kept to the quota modes (dump records are whole). m010: each answer's
`endpoint` (fetch, counts, citations, dump). m011: `outputs_wide`, a view with one row
per output and a column per common source's counts (`store.wide`). m012: one job per
output: jobs that held several outputs split, identifiers several outputs carry marked
`shared` in `aliases` (`upgrade_split`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from harvester.model import JobState
from harvester.store import aliases, upgrade_ledger, upgrade_mentions, upgrade_split, wide
from harvester.store.codec import BodyCodec
from harvester.store.upgrade import UpgradeProgress

migrations = Migrations("altmetric-harvester")


@migrations()
def m001_jobs_and_responses(db: Database) -> None:
    states = ", ".join(f"'{state}'" for state in JobState)
    for statement in (
        f"""CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            id_type TEXT NOT NULL,
            identifier TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ({states})),
            priority INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_token TEXT,
            lease_expires_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (id_type, identifier)
        )""",
        # The claim reads only this partial index: it holds just the pending jobs.
        """CREATE INDEX jobs_runnable ON jobs (priority DESC, next_attempt_at)
            WHERE state = 'pending'""",
        "CREATE INDEX jobs_state ON jobs (state)",
        """CREATE TABLE responses (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            http_status INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            request_params TEXT NOT NULL,
            mode TEXT NOT NULL DEFAULT 'full',
            fetched_at TEXT NOT NULL,
            body BLOB NOT NULL
        )""",
        "CREATE INDEX responses_job ON responses (job_id, id)",
        "CREATE INDEX responses_fetched_at ON responses (fetched_at)",
    ):
        db.execute(statement)


@migrations()
def m002_tweet_quota(db: Database) -> None:
    for statement in (
        # Every tweet ID charged against the quota, once, with when (Unix seconds:
        # compact for millions of rows). Rows older than the window are pruned, so
        # the table's size is the window's usage.
        """CREATE TABLE tweet_ledger (
            tweet_id INTEGER PRIMARY KEY,
            charged_at_s REAL NOT NULL
        )""",
        "CREATE INDEX tweet_ledger_charged ON tweet_ledger (charged_at_s)",
        # Jobs queued by `backfill --twitter` wait in an index of their own, so a
        # daemon short of quota never walks past them.
        "ALTER TABLE jobs ADD COLUMN needs_full INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX jobs_runnable",
        """CREATE INDEX jobs_runnable ON jobs (priority DESC, next_attempt_at)
            WHERE state = 'pending' AND needs_full = 0""",
        """CREATE INDEX jobs_backfill ON jobs (priority DESC, next_attempt_at)
            WHERE state = 'pending' AND needs_full = 1""",
        "CREATE INDEX responses_degraded ON responses (job_id) WHERE mode != 'full'",
        # What the daemon last said of itself (its quota view), for `status`.
        """CREATE TABLE daemon_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ):
        db.execute(statement)


@migrations()
def m003_error_index(db: Database) -> None:
    # status's commonest errors, without reading every pending job of millions.
    db.execute("CREATE INDEX jobs_errors ON jobs (state, last_error) WHERE last_error IS NOT NULL")


@migrations()
def m004_compressed_bodies(db: Database) -> None:
    for statement in (
        """CREATE TABLE zstd_dictionaries (
            id INTEGER PRIMARY KEY,
            trained_at TEXT NOT NULL,
            sample_count INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
        # One row per distinct answer: sha256 and size are of the uncompressed bytes.
        """CREATE TABLE bodies (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            size_bytes INTEGER NOT NULL,
            codec TEXT NOT NULL CHECK (codec IN ('identity', 'zstd')),
            dictionary_id INTEGER REFERENCES zstd_dictionaries (id),
            data BLOB NOT NULL
        )""",
        """CREATE TABLE responses_v4 (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            http_status INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            request_params TEXT NOT NULL,
            mode TEXT NOT NULL DEFAULT 'full',
            fetched_at TEXT NOT NULL,
            body_id INTEGER NOT NULL REFERENCES bodies (id)
        )""",
    ):
        db.execute(statement)
    _move_bodies_out_of_responses(db)
    for statement in (
        "DROP TABLE responses",
        "ALTER TABLE responses_v4 RENAME TO responses",
        "CREATE INDEX responses_job ON responses (job_id, id)",
        "CREATE INDEX responses_fetched_at ON responses (fetched_at)",
        "CREATE INDEX responses_degraded ON responses (job_id) WHERE mode != 'full'",
        "CREATE INDEX responses_body ON responses (body_id)",
    ):
        db.execute(statement)


def _move_bodies_out_of_responses(db: Database) -> None:
    """Compress every stored body into `bodies` (identical ones once) and copy the
    responses across, pointing at them. The sha256 is recomputed from the bytes, so a
    body damaged before the move still shows up in `verify`."""
    codec = BodyCodec()
    rows = db.execute(
        """SELECT id, job_id, http_status, sha256, size_bytes, request_params, mode,
                  fetched_at, body FROM responses ORDER BY id"""
    )
    while batch := rows.fetchmany(1000):
        for *columns, body in batch:
            actual = hashlib.sha256(body).hexdigest()
            found = db.execute("SELECT id FROM bodies WHERE sha256 = ?", (actual,)).fetchone()
            if found is None:
                compressed = codec.compress(body)
                body_id = db.execute(
                    """INSERT INTO bodies (sha256, size_bytes, codec, dictionary_id, data)
                       VALUES (?, ?, ?, NULL, ?)""",
                    (actual, len(body), compressed.codec, compressed.data),
                ).lastrowid
            else:
                body_id = found[0]
            db.execute(
                "INSERT INTO responses_v4 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*columns, body_id)
            )


# long: one migration is one schema version, read whole; a shipped one never changes.
@migrations()
def m005_derived_tables(db: Database) -> None:
    for statement in (
        # One row per stored 200 answer (a snapshot of the output at fetched_at).
        """CREATE TABLE outputs (
            response_id INTEGER PRIMARY KEY REFERENCES responses (id),
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            altmetric_id INTEGER,
            doi TEXT,
            pmid TEXT,
            arxiv_id TEXT,
            identifiers TEXT NOT NULL,
            title TEXT,
            journal TEXT,
            pubdate TEXT,
            output_type TEXT,
            score REAL,
            score_history TEXT,
            posts_count INTEGER,
            first_seen_at TEXT,
            fetched_at TEXT NOT NULL,
            mode TEXT NOT NULL,
            is_latest INTEGER NOT NULL
        )""",
        "CREATE INDEX outputs_job ON outputs (job_id, response_id)",
        "CREATE INDEX outputs_altmetric_id ON outputs (altmetric_id)",
        "CREATE INDEX outputs_doi ON outputs (doi)",
        # Journal and score questions are about the latest snapshots: index those.
        "CREATE INDEX outputs_latest_journal ON outputs (journal, score) WHERE is_latest",
        "CREATE INDEX outputs_latest_score ON outputs (score) WHERE is_latest",
        # The latest snapshot of each output: what most questions are about. A flag
        # kept as snapshots arrive, not a max() per row: a scan of 8M outputs stays a
        # scan instead of 8M index seeks.
        "CREATE INDEX outputs_latest_job ON outputs (job_id) WHERE is_latest",
        """CREATE VIEW latest_outputs AS
            SELECT response_id, job_id, altmetric_id, doi, pmid, arxiv_id, identifiers,
                   title, journal, pubdate, output_type, score, score_history,
                   posts_count, first_seen_at, fetched_at, mode
            FROM outputs WHERE is_latest""",
        """CREATE TABLE counts (
            response_id INTEGER NOT NULL REFERENCES responses (id),
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            source TEXT NOT NULL,
            posts_count INTEGER,
            unique_users_count INTEGER,
            PRIMARY KEY (response_id, source)
        ) WITHOUT ROWID""",
        "CREATE INDEX counts_source ON counts (source, posts_count)",
        """CREATE TABLE readers (
            response_id INTEGER NOT NULL REFERENCES responses (id),
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            reference_manager TEXT NOT NULL,
            readers INTEGER,
            PRIMARY KEY (response_id, reference_manager)
        ) WITHOUT ROWID""",
        """CREATE TABLE score_context (
            response_id INTEGER NOT NULL REFERENCES responses (id),
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            context TEXT NOT NULL,
            rank INTEGER,
            percentile REAL,
            higher_than INTEGER,
            mean REAL,
            median REAL,
            sample_size INTEGER,
            rank_type TEXT,
            PRIMARY KEY (response_id, context)
        ) WITHOUT ROWID""",
        # A mention is stored once per output, with the first and last snapshots that
        # carried it: re-fetching an output with 5,000 tweets adds no 5,000 rows.
        # Keyed by what identifies a post, with no rowid: the key is the table, so
        # there is no second copy of it in an index (a third of the table's size).
        """CREATE TABLE mentions (
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            source TEXT NOT NULL,
            post_key TEXT NOT NULL,
            url TEXT,
            title TEXT,
            posted_on TEXT,
            author_name TEXT,
            author_id TEXT,
            tweet_id INTEGER,
            first_response_id INTEGER NOT NULL REFERENCES responses (id),
            last_response_id INTEGER NOT NULL REFERENCES responses (id),
            PRIMARY KEY (job_id, source, post_key)
        ) WITHOUT ROWID""",
        # Mentions over time, by source; tweets carry no date in the fetch API.
        """CREATE INDEX mentions_source_posted ON mentions (source, posted_on)
            WHERE posted_on IS NOT NULL""",
    ):
        db.execute(statement)


@migrations()
def m006_compact_mentions(db: Database) -> None:
    upgrade_mentions.migrate(db)


@migrations()
def m007_tweet_charges(db: Database) -> None:
    upgrade_ledger.migrate(db)


@migrations()
def m008_unused_indexes(db: Database) -> None:
    # outputs_latest_job: every lookup of an output's snapshots by job (deriving's
    # is-latest flag, refresh --where) is served as fast by outputs_job (job_id,
    # response_id), which it only repeated for the latest ones; 11 bytes an output.
    # counts_source: no query of ours, nor of the README's, read it; 47 bytes an
    # output (a tenth of what `counts` holds for the simulator's answers) and a random
    # page write per count stored. `CREATE INDEX counts_source ON counts (source,
    # posts_count)` makes it again, and the harvester keeps it.
    db.execute("DROP INDEX IF EXISTS outputs_latest_job")
    db.execute("DROP INDEX IF EXISTS counts_source")


def pending_migrations(path: Path) -> list[str]:
    """The schema migrations opening `path` for writing would run (none for a new or
    current store). Some take minutes on a large store: the daemon tells systemd."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        database = Database(conn, execute_plugins=False)
        if "_sqlite_migrations" not in database.table_names():
            return []
        return [migration.name for migration in migrations.pending(database)]
    except sqlite3.DatabaseError:
        return []  # opening it for real reports what is wrong
    finally:
        conn.close()


@migrations()
def m009_aliases(db: Database) -> None:
    # Every identifier an answer names its output by, with the output's job
    # (`store.aliases`): an output imported or fetched under one identifier is found
    # again under any other, so it never gets a second job. Filled from the answers
    # derived so far; from now on, as answers are derived.
    db.execute(aliases.SCHEMA)
    # Answers from the dump (mode 'dump') are whole, not degraded: the partial index of
    # degraded answers, which `backfill --twitter` reads, keeps to the two quota modes.
    db.execute("DROP INDEX responses_degraded")
    db.execute(
        """CREATE INDEX responses_degraded ON responses (job_id)
           WHERE mode IN ('original_tweets', 'no_twitter')"""
    )
    total = int(db.execute("SELECT count(*) FROM outputs").fetchone()[0])
    with UpgradeProgress("aliases", total) as progress:
        rows = db.execute("SELECT * FROM outputs ORDER BY response_id")
        while batch := rows.fetchmany(10_000):
            # As m009 shipped: the first answer to name an identifier keeps it (m012
            # marks those several outputs carry).
            db.conn.executemany(
                "INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", aliases.output_aliases(batch)
            )
            progress.advance(len(batch))


@migrations()
def m010_response_endpoint(db: Database) -> None:
    # Which call each answer came from (`model.Endpoint`): the fetch call, the free
    # counts call, a discovery page, or the dump. A constant default costs nothing to
    # add (SQLite rewrites no row); the dump's records, known by their mode, are named.
    db.execute("ALTER TABLE responses ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'fetch'")
    db.execute("UPDATE responses SET endpoint = 'dump' WHERE mode = 'dump'")


@migrations()
def m011_outputs_wide(db: Database) -> None:
    # One row per output's latest snapshot, a column per common source's posts and
    # accounts, the Mendeley readers and the score's percentile among all outputs
    # (`store.wide`): what rAltmetric's altmetric_data() gives, without a pivot. A
    # view: no space, no rows to write as answers arrive.
    db.execute(wide.CREATE_VIEW)


@migrations()
def m012_one_job_per_output(db: Database) -> None:
    # An answer's Altmetric ID is its output's identity: `aliases.shared` for the
    # identifiers several outputs carry (a book's ISBN, which its chapters carry too),
    # an index of each job's Altmetric IDs, and every job that held several outputs
    # split into one job each (`upgrade_split`), which the log says.
    upgrade_split.migrate(db)

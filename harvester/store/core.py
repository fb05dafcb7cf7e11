"""The store: one SQLite file holding the job queue, every answer (compressed, with
its sha256), the derived tables, the tweet ledger and the daemon's state.

`Store` opens it (refusing a missing store where one is expected, someone else's
database, or a store too old to read), applies the schema's migrations, and writes
`record`, the unit of work: a batch of job outcomes, their responses, bodies,
derived rows and tweet charges in one transaction, so the tables never disagree.
Everything else is a room of its own, reached through the store's attributes:
`jobs` (the queue), `responses`, `bodies`, `ledger` and `state`.

Times are ISO 8601 UTC text of fixed width (`model.iso_utc`), so they sort and
compare as strings and read well in Datasette and the sqlite3 shell.
"""

from __future__ import annotations

import sqlite3
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harvester.errors import StoreError
from harvester.model import JobOutcome, RecordResult, iso_utc
from harvester.store.bodies import BodyStore
from harvester.store.connection import (
    check_is_store,
    check_store_path,
    closed_on_error,
    connect,
    explain_sqlite_error,
    reads_immutable,
    say_immutable,
    transaction,
)
from harvester.store.derived import derive_answers
from harvester.store.discovered import DiscoveredPage, PageCounts, record_page
from harvester.store.home import reach, record_home
from harvester.store.imports import ImportCounts, ImportedRecord, import_batch
from harvester.store.jobs import JobQueue, refresh_cutoff, stale_job_ids
from harvester.store.ledger import TweetLedger
from harvester.store.responses import Responses
from harvester.store.snapshot import Answer
from harvester.store.state import DaemonState
from harvester.store.version import is_current, table_names


def _migrate(conn: sqlite3.Connection) -> None:
    """WAL, and the schema's migrations not run yet. sqlite-utils (and the migrations)
    are imported here, by the commands that write, not by those that only read."""
    from sqlite_utils import Database

    from harvester.store.schema import migrations

    db = Database(conn, execute_plugins=False)
    db.enable_wal()
    migrations.apply(db)


class Store:
    """One connection to the store file. Use it from one thread at a time (the daemon
    gives it a thread of its own, `store.aio`, so SQLite never blocks the event loop)."""

    def __init__(
        self, path: Path, *, read_only: bool = False, must_exist: bool = False, derive: bool = True
    ) -> None:
        self.path = path  # as given
        self.read_only = read_only
        self.derive = derive  # fill the derived tables in `record`
        expected = read_only or must_exist
        check_store_path(path, must_exist=expected)
        existed = path.exists()
        self.opened_as = reach(path)  # its home name: one log, one set of locks
        # Where its directory is read-only: read as an immutable file (`connection`).
        self.immutable = read_only and reads_immutable(self.opened_as)
        if self.immutable:
            say_immutable(path)
        try:
            self.conn = connect(self.opened_as, read_only=read_only, immutable=self.immutable)
            with closed_on_error(self.conn):
                check_is_store(path, table_names(self.conn), existed=existed)
                if not read_only:
                    _migrate(self.conn)
                    record_home(self.conn, self.opened_as)
                elif not is_current(self.conn):  # without loading the migrations
                    raise StoreError(
                        f"{path} was written by an older version: run any writing command "
                        "(e.g. `harvester derive`) once to upgrade it"
                    )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot open store {path}: {explain_sqlite_error(error)}") from None
        self.bodies = BodyStore(self.conn, self.transaction, writable=not read_only)
        self.jobs = JobQueue(self.conn)
        self.responses = Responses(self.conn, self.bodies)
        self.ledger = TweetLedger(self.conn)
        self.state = DaemonState(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock up front."""
        with transaction(self.conn) as conn:
            yield conn

    def record(
        self, outcomes: Sequence[JobOutcome], ledger_window_s: float | None = None
    ) -> RecordResult:
        """Write outcomes, their responses and their tweet charges in one transaction.

        An outcome whose lease token no longer matches (the job was released or
        re-claimed meanwhile) is discarded. With `ledger_window_s`, ledger rows older
        than the window are pruned first, so every row left is inside it and an ID
        already there costs nothing again.
        """
        now_s = time.time()
        now = iso_utc(now_s)
        written = charged = pruned = 0
        to_derive: list[Answer] = []
        underived: list[str] = []
        with self.transaction() as conn:
            charges = self.ledger.begin(conn, ledger_window_s, now_s)  # prunes the window
            pruned = charges.pruned
            for outcome in outcomes:
                if not self.jobs.apply(conn, outcome, now):
                    continue
                written += 1
                response = outcome.response
                if response is None:
                    continue
                response_id = self.responses.insert(conn, outcome.job_id, response)
                if self.derive and response.http_status == 200:
                    to_derive.append(
                        Answer(
                            response_id,
                            outcome.job_id,
                            response.fetched_at,
                            response.mode,
                            response.body,
                        )
                    )
                charges.add(response.tweet_ids)
            charged = self.ledger.charge(conn, charges)  # the batch's new IDs, in one row
            if to_derive:
                underived = derive_answers(conn, to_derive).problems
        self.ledger.committed(charges)  # only now may the in-memory index take them in
        self.bodies.train_if_due()
        return RecordResult(written, charged, pruned, tuple(underived))

    def record_discovered(self, page: DiscoveredPage) -> PageCounts:
        """Store a page of discovery results as counts snapshots, with the position
        after it, in one transaction (`store.discovered`)."""
        with self.transaction() as conn:
            counts = record_page(conn, self.responses, page, derive=self.derive)
        self.bodies.train_if_due()
        return counts

    def refresh_older_than(self, older_than_s: float) -> int:
        """Requeue every done job whose latest answer is older than `older_than_s`
        (the daemon's scheduled refresh; the CLI's `refresh` may add a --where). Every
        id is read before any is requeued: the requeued must not be read again."""
        chosen = array("q")
        for job_ids in stale_job_ids(self.conn, refresh_cutoff(older_than_s), 5_000):
            chosen.extend(job_ids)
        return self.jobs.requeue_done(chosen)

    def import_records(
        self, records: Sequence[ImportedRecord], position: str | None = None
    ) -> ImportCounts:
        """Store records of Altmetric's dump as answers, and where the dump was read up
        to, in one transaction (`store.imports`)."""
        with self.transaction() as conn:
            counts = import_batch(conn, self.responses, records, position)
        self.bodies.train_if_due()
        return counts

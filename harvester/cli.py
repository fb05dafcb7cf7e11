"""The `harvester` command: parse arguments, load settings, call the library.

Exit codes: 0 success; 1 a failure the output explains (bad input, rejected lines,
checksum mismatches, missing key or store); 2 a usage error; 3 the API rejected the
key; 4 `run --drain` drained the queue but left jobs in `failed`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from harvester import __version__
from harvester.commands.enqueue import (
    NotTextError,
    RejectionReport,
    enqueue_stream,
    open_identifier_text,
)
from harvester.commands.export import (
    ParquetUnavailable,
    parse_body,
    rows_as_csv,
    rows_as_json,
    rows_as_jsonl,
    rows_as_parquet,
    rows_as_table,
    verify_checksums,
    write_csv,
    write_jsonl,
)
from harvester.commands.output import UnsafeOutput, refuse_store_files, replace_on_success
from harvester.commands.status import collect_status, render_status
from harvester.config import ConfigError, Settings, load_api_key, load_settings
from harvester.errors import CommandError, StoreError
from harvester.identifiers import IdentifierError, canonical_type, normalise
from harvester.logs import configure_logging, register_secret
from harvester.model import FINAL_STATES
from harvester.progress import ProgressLine
from harvester.service.daemon import (
    EXIT_FAILURE,
    EXIT_KEY_REJECTED,
    EXIT_OK,
    DaemonLockError,
    daemon_lock,
    run_daemon,
)
from harvester.store import Store, derived
from harvester.store.connection import explain_sqlite_error
from harvester.store.tables import (
    QueryError,
    count_rows,
    export_rows,
    jobs_to_refresh,
    parse_age,
    run_query,
)

EXIT_JOBS_FAILED = 4  # `run --drain` finished, but some jobs ended `failed`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester",
        description="Harvest the Altmetric details (fetch) API into a SQLite store.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, default=None)
    # The same options after the command (`harvester status --db x`); SUPPRESS keeps a
    # value given before the command when none is given after it.
    after_command = argparse.ArgumentParser(add_help=False)
    _add_global_options(after_command, default=argparse.SUPPRESS)
    commands = _Commands(
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), after_command
    )

    enqueue = commands.add_parser("enqueue", help="queue identifiers from a file or stdin")
    enqueue.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    enqueue.add_argument(
        "--type",
        dest="id_type",
        metavar="T",
        help="type of lines without a type: prefix (doi, pmid, arxiv, ...)",
    )
    enqueue.add_argument(
        "--priority",
        type=_priority,
        default=0,
        help="higher runs first (default 0, range -1000000..1000000)",
    )

    run = commands.add_parser("run", help="run the harvest daemon")
    run.add_argument("--drain", action="store_true", help="exit 0 once no job is left to run")

    status = commands.add_parser("status", help="job counts, throughput and errors")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    show = commands.add_parser("show", help="print the stored response of one identifier")
    show.add_argument("type", metavar="TYPE")
    show.add_argument("identifier", metavar="IDENTIFIER")
    show_format = show.add_mutually_exclusive_group()
    show_format.add_argument("--raw", action="store_true", help="write the exact stored bytes")
    show_format.add_argument(
        "--json", action="store_true", help="the metadata and the answer as one JSON object"
    )

    export = commands.add_parser(
        "export", help="a table's rows, or one record per job with a response"
    )
    export.add_argument("--format", choices=("jsonl", "csv", "parquet"), required=True)
    export.add_argument(
        "--table", metavar="NAME", help="a table or view (outputs, mentions, ...); default: jobs"
    )
    export.add_argument(
        "--where", metavar="SQL", help="only rows matching this SQL expression (with --table)"
    )
    export.add_argument("--output", type=Path, metavar="FILE", help="default: stdout")

    query = commands.add_parser("query", help="run one read-only SQL statement")
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")

    derive = commands.add_parser(
        "derive", help="fill the derived tables from stored answers not yet derived"
    )
    derive.add_argument(
        "--rebuild", action="store_true", help="empty the derived tables first, then derive all"
    )

    refresh = commands.add_parser(
        "refresh", help="requeue outputs whose latest snapshot is older than an age"
    )
    refresh.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 2w")
    refresh.add_argument(
        "--where", metavar="SQL", help="only outputs matching this SQL over latest_outputs"
    )

    commands.add_parser("verify", help="recompute every stored sha256")

    backfill = commands.add_parser(
        "backfill", help="re-fetch outputs stored in a degraded quota mode, in full mode"
    )
    backfill.add_argument(
        "--twitter",
        action="store_true",
        required=True,
        help="outputs fetched without (some) Twitter data",
    )

    retry = commands.add_parser("retry", help="put finished jobs back to pending")
    retry.add_argument("--state", choices=FINAL_STATES, default="failed")

    simulate = commands.add_parser("simulate", help="serve the bundled API simulator")
    simulate.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    simulate.add_argument("--port", type=int, default=8642, help="0 picks a free port")
    simulate.add_argument("--latency-ms", type=float, default=0.0)
    simulate.add_argument("--key", default="simulator-key", help="the key clients must send")
    simulate.add_argument(
        "--body-pool",
        type=int,
        default=0,
        metavar="N",
        help="benchmarks: serve N pre-rendered outputs instead of rendering",
    )
    simulate.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="answer 429 beyond R requests/s (a token bucket)",
    )
    simulate.add_argument("--rate-limit-burst", type=int, default=1, metavar="B")
    simulate.add_argument("--rate-limit-status", type=int, choices=(420, 429), default=429)
    simulate.add_argument(
        "--retry-after", action="store_true", help="send Retry-After with rate-limit refusals"
    )
    simulate.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="replace this fraction of answers with faults (0-1)",
    )

    demo = commands.add_parser("demo", help="harvest a sample from the simulator, no key needed")
    demo.add_argument("--count", type=int, default=400, help="identifiers to harvest")
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=default,
        help="TOML settings (default: ./harvester.toml if present)",
    )
    parser.add_argument(
        "--db", type=Path, metavar="PATH", default=default, help="store path (overrides store.path)"
    )


class _Commands:
    """Subcommand parsers that all accept the global options too."""

    def __init__(self, actions: Any, common: argparse.ArgumentParser) -> None:
        self._actions = actions
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._actions.add_parser(
            name, parents=[self._common], **kwargs
        )
        return parser


def _priority(text: str) -> int:
    value = int(text)
    if not -1_000_000 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between -1000000 and 1000000")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
    try:
        return handler(args)
    except (
        CommandError,
        NotTextError,
        UnsafeOutput,
        ConfigError,
        StoreError,
        DaemonLockError,
        IdentifierError,
        QueryError,
        ParquetUnavailable,
    ) as error:
        print(f"harvester {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as error:
        print(f"harvester {args.command}: {explain_sqlite_error(error)}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # `harvester export ... | head`: the reader has what it wanted. Point stdout
        # at /dev/null so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        print(f"harvester {args.command}: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"harvester {args.command}: interrupted", file=sys.stderr)
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config, db_override=args.db)
    configure_logging(settings.log.level)
    return settings


def _open_store(args: argparse.Namespace, *, read_only: bool) -> Store:
    return Store(_settings(args).store.path, read_only=read_only)


def cmd_enqueue(args: argparse.Namespace) -> int:
    default_type = canonical_type(args.id_type) if args.id_type else None
    path = _settings(args).store.path
    rejections = RejectionReport(sys.stderr)
    progress = ProgressLine("enqueue")
    # The input is checked before the store is opened: a binary file creates nothing.
    with _input(args.file) as stream, _new_store_kept_if_used(path) as store:
        report = enqueue_stream(
            store,
            stream,
            default_type=default_type,
            priority=args.priority,
            on_reject=rejections.add,
            on_progress=progress.update,
        )
    progress.close()
    rejections.summarise()
    print(
        f"added {report.added:,}, already queued {report.already_queued:,}, "
        f"rejected {report.rejected:,}"
    )
    return EXIT_FAILURE if report.rejected else EXIT_OK


@contextmanager
def _new_store_kept_if_used(path: Path) -> Iterator[Store]:
    """Open (or create) the store for `enqueue`; a store this run created but put
    nothing into is removed again, so a mistyped `--db` or a file of rejects leaves
    no stray file behind."""
    is_new = not path.exists()
    store = Store(path)
    try:
        yield store
    finally:
        unused = is_new and not store.jobs.any()
        store.close()
        if unused:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with suppress(FileNotFoundError):
                    path.with_name(path.name + suffix).unlink()


@contextmanager
def _input(name: str) -> Iterator[IO[str]]:
    if name == "-":
        if sys.stdin.isatty():
            print(
                "harvester enqueue: reading identifiers from standard input, one per line "
                "(end with Ctrl-D)",
                file=sys.stderr,
            )
        yield open_identifier_text(sys.stdin.buffer, "standard input")
        return
    try:
        handle = open(name, "rb")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot read {name}: {error.strerror}") from None
    with handle:
        yield open_identifier_text(handle, name)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _require_store(settings.store.path)
    key = load_api_key(settings)
    register_secret(key.reveal())
    report = asyncio.run(
        run_daemon(
            settings,
            key,
            drain=args.drain,
            reload_settings=lambda: load_settings(args.config, db_override=args.db),
        )
    )
    if report.exit_code == EXIT_KEY_REJECTED:
        print(
            "harvester run: API key rejected (HTTP 403); unfinished jobs stay pending",
            file=sys.stderr,
        )
    if args.drain and report.exit_code == EXIT_OK:
        return _drain_verdict(settings.store.path, report.stopped_by)
    return report.exit_code


def _drain_verdict(path: Path, stopped_by: str) -> int:
    """A drain that ran to its end exits 0 only if every job ended `done` or
    `not_found`: scripts that chain on it must not mistake a partly failed harvest for
    success. A drain stopped by SIGTERM/SIGINT is a graceful stop and exits 0, as
    every stop does (issue 3's contract); it says what it left."""
    if stopped_by != "drained":
        print(
            f"harvester run: stopped by {stopped_by} before the queue was drained; "
            "unfinished jobs stay pending",
            file=sys.stderr,
        )
        return EXIT_OK
    with Store(path, read_only=True) as store:
        failed = store.jobs.counts_by_state()["failed"]
    if failed:
        print(
            f"harvester run: drained, but {failed:,} jobs ended failed "
            "(`harvester status` shows why; `harvester retry` requeues them)",
            file=sys.stderr,
        )
        return EXIT_JOBS_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with Store(settings.store.path, read_only=True) as store:
        status = collect_status(store, settings.quota)
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    identifier = normalise(args.type, args.identifier)
    with _open_store(args, read_only=True) as store:
        job = store.jobs.find(identifier)
        if job is None:
            raise CommandError(f"{identifier} is not in the store")
        response = store.responses.latest(job["id"])
    if response is None:
        raise CommandError(f"{identifier} has no stored response yet (state: {job['state']})")
    if args.raw:
        sys.stdout.buffer.write(response["body"])
        sys.stdout.buffer.flush()
        return EXIT_OK
    metadata = {
        "type": identifier.id_type,
        "identifier": identifier.value,
        "state": job["state"],
        "http_status": response["http_status"],
        "fetched_at": response["fetched_at"],
        "mode": response["mode"],
        "sha256": response["sha256"],
        "size_bytes": response["size_bytes"],
        "request_params": json.loads(response["request_params"] or "{}"),
    }
    answer = parse_body(response["body"])
    if args.json:
        print(json.dumps({**metadata, "body": answer}, indent=2, ensure_ascii=False))
        return EXIT_OK
    # The answer alone on stdout, so `harvester show ... | jq` works; the rest aside.
    print(
        "  ".join(f"{name}={value}" for name, value in metadata.items() if name != "request_params")
        + f"  params={response['request_params']}",
        file=sys.stderr,
    )
    if answer is None:
        print(response["body"].decode("utf-8", "replace"))  # a 404's text
    else:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    path = _settings(args).store.path
    if args.output is not None:
        # Before anything is opened for writing: never over the store's own files.
        refuse_store_files(args.output, path)
        if not args.output.resolve().parent.is_dir():
            raise CommandError(f"cannot write {args.output}: no directory {args.output.parent}")
    if args.table is None:
        return _export_jobs(args, path)
    writers = {"jsonl": rows_as_jsonl, "csv": rows_as_csv}
    with Store(path, read_only=True) as store:
        rows = export_rows(store, args.table, args.where)
        progress = ProgressLine(f"export {args.table}")
        if progress.enabled:
            progress.total = count_rows(store, args.table, args.where)
        if args.format == "parquet":
            if args.output is None:
                raise CommandError("--format parquet needs --output FILE")
            with replace_on_success(args.output) as partial:
                count = rows_as_parquet(rows, str(partial), progress.update)
        else:
            with _output(args.output) as out:
                count = writers[args.format](rows, out, progress.update)
        progress.close()
    print(f"exported {count:,} rows of {args.table}", file=sys.stderr)
    return EXIT_OK


def _export_jobs(args: argparse.Namespace, path: Path) -> int:
    """Without --table: one record per job with a response (the original export)."""
    if args.where is not None or args.format == "parquet":
        raise CommandError("--where and --format parquet need --table NAME")
    writer = write_jsonl if args.format == "jsonl" else write_csv
    with Store(path, read_only=True) as store:
        progress = ProgressLine("export", store.responses.count())
        with _output(args.output) as out:
            count = writer(store, out, progress.update)
        progress.close()
    print(f"exported {count:,} records", file=sys.stderr)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    if not args.sql.strip():
        raise CommandError('no SQL given (e.g. harvester query "SELECT count(*) FROM jobs")')
    writers = {"table": rows_as_table, "csv": rows_as_csv, "json": rows_as_json}
    with _open_store(args, read_only=True) as store:
        rows = run_query(store, args.sql)
        writers[args.format](rows, sys.stdout, lambda _count: None)
    return EXIT_OK


def cmd_derive(args: argparse.Namespace) -> int:
    path = _settings(args).store.path
    _require_store(path)  # before the lock, which would create a file beside it
    if not args.rebuild:
        return _derive(path, rebuild=False)
    try:
        with daemon_lock(path):  # a daemon deriving meanwhile would leave gaps
            return _derive(path, rebuild=True)
    except DaemonLockError:
        raise CommandError(
            "a daemon is running on this store: stop it before derive --rebuild "
            "(plain `derive` may run beside it)"
        ) from None


def _derive(path: Path, *, rebuild: bool) -> int:
    with Store(path, must_exist=True) as store:
        if rebuild:
            derived.clear_all(store.conn)
        progress = ProgressLine("derive")
        if progress.enabled:
            progress.total = derived.count_underived(store.conn)
        done, skipped = derived.derive_missing(
            store.conn, store.bodies, lambda done, skipped: progress.update(done + skipped)
        )
        progress.close()
    print(f"derived {done:,} answers; {skipped:,} were not JSON objects and were skipped")
    return EXIT_OK


def cmd_refresh(args: argparse.Namespace) -> int:
    try:
        older_than_s = parse_age(args.older_than)
    except ValueError as error:
        raise CommandError(f"--older-than: {error}") from None
    settings = _settings(args)
    count = 0
    with (
        Store(settings.store.path, must_exist=True) as store,  # first: it may upgrade
        Store(settings.store.path, read_only=True) as reader,
    ):
        for job_ids in jobs_to_refresh(reader, older_than_s, args.where):
            count += store.jobs.requeue_done(job_ids)
    print(f"requeued {count:,} outputs for a new snapshot (latest older than {args.older_than})")
    return EXIT_OK


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file that appears only once it is whole (see safe_output)."""
    if path is None:
        yield sys.stdout
        return
    try:
        with (
            replace_on_success(path) as partial,
            partial.open("w", encoding="utf-8", newline="") as handle,
        ):
            yield handle
    except PermissionError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None


def _require_store(path: Path) -> None:
    """Commands other than `enqueue` work on a store that exists; see Store too."""
    if not path.exists():
        raise CommandError(f"no store at {path} (check --db or store.path; `enqueue` creates one)")


def cmd_verify(args: argparse.Namespace) -> int:
    with _open_store(args, read_only=True) as store:
        progress = ProgressLine("verify", store.bodies.count())
        checked, mismatches = verify_checksums(store, progress.update)
        progress.close()
        responses = store.responses.count()
    for mismatch in mismatches:
        print(
            f"MISMATCH response {mismatch.response_id} {mismatch.id_type}:{mismatch.identifier}"
            f" stored sha256 {mismatch.stored_sha256}: {mismatch.problem}"
        )
    print(
        f"checked {checked:,} distinct bodies of {responses:,} responses, "
        f"{len(mismatches):,} mismatches"
    )
    return EXIT_FAILURE if mismatches else EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    with Store(_settings(args).store.path, must_exist=True) as store:
        count = store.jobs.retry(args.state)
    print(f"requeued {count:,} {args.state} jobs")
    return EXIT_OK


def cmd_backfill(args: argparse.Namespace) -> int:
    with Store(_settings(args).store.path, must_exist=True) as store:
        count = store.jobs.queue_backfill()
    print(
        f"queued {count:,} outputs for a full re-fetch; the daemon runs them when the "
        "tweet quota has room"
    )
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from harvester.sim.server import SimulatorSettings, serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise CommandError("the simulator serves loopback only (--host 127.0.0.1 or ::1)")
    if args.body_pool < 0 or args.latency_ms < 0:
        raise CommandError("--body-pool and --latency-ms must not be negative")
    if not 0 <= args.fault_rate <= 1:
        raise CommandError("--fault-rate must be between 0 and 1")
    if args.rate_limit is not None and (args.rate_limit <= 0 or args.rate_limit_burst < 1):
        raise CommandError("--rate-limit must be > 0 and --rate-limit-burst >= 1")
    settings = SimulatorSettings(
        key=args.key,
        latency_s=args.latency_ms / 1000,
        record_sent=False,
        body_pool=args.body_pool,
        rate_limit_per_s=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        rate_limit_status=args.rate_limit_status,
        send_retry_after=args.retry_after,
        fault_rate=args.fault_rate,
    )
    with suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, args.host, args.port))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from harvester.commands.demo import run_demo

    if args.count < 1 or args.count > 100_000:
        raise CommandError("--count must be between 1 and 100000")
    return asyncio.run(run_demo(args.db, args.count))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "enqueue": cmd_enqueue,
    "run": cmd_run,
    "status": cmd_status,
    "show": cmd_show,
    "export": cmd_export,
    "query": cmd_query,
    "derive": cmd_derive,
    "refresh": cmd_refresh,
    "verify": cmd_verify,
    "retry": cmd_retry,
    "backfill": cmd_backfill,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
}

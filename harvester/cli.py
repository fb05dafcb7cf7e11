"""The `harvester` command: parse arguments, load settings, call the library.

Exit codes: 0 success; 1 a failure the output explains (bad input, rejected lines,
checksum mismatches, missing key); 2 a usage error; 3 the API rejected the key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from harvester import __version__, derived
from harvester.config import ConfigError, Settings, load_api_key, load_settings
from harvester.daemon import EXIT_FAILURE, EXIT_OK, DaemonLockError, daemon_lock, run_daemon
from harvester.enqueue import Rejection, enqueue_stream
from harvester.export import (
    ParquetUnavailable,
    rows_as_csv,
    rows_as_json,
    rows_as_jsonl,
    rows_as_parquet,
    rows_as_table,
    verify_checksums,
    write_csv,
    write_jsonl,
)
from harvester.identifiers import IdentifierError, canonical_type, normalise
from harvester.logs import configure_logging, register_secret
from harvester.progress import ProgressLine
from harvester.status import collect_status, render_status
from harvester.store import FINAL_STATES, Store, StoreError
from harvester.tables import (
    QueryError,
    count_rows,
    export_rows,
    jobs_to_refresh,
    parse_age,
    run_query,
)


class CommandError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester",
        description="Harvest the Altmetric details (fetch) API into a SQLite store.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML settings (default: ./harvester.toml if present)",
    )
    parser.add_argument("--db", type=Path, metavar="PATH", help="store path (overrides store.path)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    show.add_argument("--raw", action="store_true", help="write the exact stored bytes")

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
        print(f"harvester {args.command}: the store failed: {error}", file=sys.stderr)
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

    def report_reject(rejection: Rejection) -> None:
        print(
            f"line {rejection.line_number}: {rejection.reason}: {rejection.line!r}", file=sys.stderr
        )

    progress = ProgressLine("enqueue")
    with _open_store(args, read_only=False) as store, _input(args.file) as stream:
        report = enqueue_stream(
            store,
            stream,
            default_type=default_type,
            priority=args.priority,
            on_reject=report_reject,
            on_progress=progress.update,
        )
    progress.close()
    print(
        f"added {report.added:,}, already queued {report.already_queued:,}, "
        f"rejected {report.rejected:,}"
    )
    return EXIT_FAILURE if report.rejected else EXIT_OK


@contextmanager
def _input(name: str) -> Any:
    if name == "-":
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
        yield sys.stdin
        return
    try:
        handle = open(name, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as error:
        raise CommandError(f"cannot read {name}: {error.strerror}") from None
    with handle:
        yield handle


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
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
    if report.exit_code == 3:
        print(
            "harvester run: API key rejected (HTTP 403); unfinished jobs stay pending",
            file=sys.stderr,
        )
    return report.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with Store(settings.store.path, read_only=True) as store:
        status = collect_status(store, settings.quota)
    print(json.dumps(status, indent=2) if args.json else render_status(status))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    identifier = normalise(args.type, args.identifier)
    with _open_store(args, read_only=True) as store:
        job = store.find_job(identifier)
        if job is None:
            raise CommandError(f"{identifier} is not in the store")
        response = store.latest_response(job["id"])
    if response is None:
        raise CommandError(f"{identifier} has no stored response yet (state: {job['state']})")
    if args.raw:
        sys.stdout.buffer.write(response["body"])
        sys.stdout.buffer.flush()
        return EXIT_OK
    print(
        f"{identifier}  state={job['state']}  http_status={response['http_status']}  "
        f"fetched_at={response['fetched_at']}  mode={response['mode']}"
    )
    print(
        f"sha256={response['sha256']}  bytes={response['size_bytes']:,}  "
        f"params={response['request_params']}"
    )
    try:
        print(json.dumps(json.loads(response["body"]), indent=2, ensure_ascii=False))
    except ValueError:
        print(response["body"].decode("utf-8", "replace"))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    if args.table is None:
        return _export_jobs(args)
    writers = {"jsonl": rows_as_jsonl, "csv": rows_as_csv}
    with _open_store(args, read_only=True) as store:
        rows = export_rows(store, args.table, args.where)
        progress = ProgressLine(f"export {args.table}")
        if progress.enabled:
            progress.total = count_rows(store, args.table, args.where)
        if args.format == "parquet":
            if args.output is None:
                raise CommandError("--format parquet needs --output FILE")
            count = rows_as_parquet(rows, str(args.output), progress.update)
        else:
            with _output(args.output) as out:
                count = writers[args.format](rows, out, progress.update)
        progress.close()
    print(f"exported {count:,} rows of {args.table}", file=sys.stderr)
    return EXIT_OK


def _export_jobs(args: argparse.Namespace) -> int:
    """Without --table: one record per job with a response (the original export)."""
    if args.where or args.format == "parquet":
        raise CommandError("--where and --format parquet need --table NAME")
    writer = write_jsonl if args.format == "jsonl" else write_csv
    with _open_store(args, read_only=True) as store:
        progress = ProgressLine("export", store.count_responses())
        with _output(args.output) as out:
            count = writer(store, out, progress.update)
        progress.close()
    print(f"exported {count:,} records", file=sys.stderr)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    writers = {"table": rows_as_table, "csv": rows_as_csv, "json": rows_as_json}
    with _open_store(args, read_only=True) as store:
        rows = run_query(store, args.sql)
        writers[args.format](rows, sys.stdout, lambda _count: None)
    return EXIT_OK


def cmd_derive(args: argparse.Namespace) -> int:
    path = _settings(args).store.path
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
            derived.clear_all(store)
        progress = ProgressLine("derive")
        if progress.enabled:
            progress.total = derived.count_underived(store.conn)
        done, skipped = derived.derive_missing(
            store, lambda done, skipped: progress.update(done + skipped)
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
            count += store.requeue_done_jobs(job_ids)
    print(f"requeued {count:,} outputs for a new snapshot (latest older than {args.older_than})")
    return EXIT_OK


@contextmanager
def _output(path: Path | None) -> Any:
    if path is None:
        yield sys.stdout
        return
    try:
        handle: IO[str] = path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror}") from None
    with handle:
        yield handle


def cmd_verify(args: argparse.Namespace) -> int:
    with _open_store(args, read_only=True) as store:
        progress = ProgressLine("verify", store.bodies.count())
        checked, mismatches = verify_checksums(store, progress.update)
        progress.close()
        responses = store.count_responses()
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
        count = store.retry_jobs(args.state)
    print(f"requeued {count:,} {args.state} jobs")
    return EXIT_OK


def cmd_backfill(args: argparse.Namespace) -> int:
    with Store(_settings(args).store.path, must_exist=True) as store:
        count = store.queue_backfill()
    print(
        f"queued {count:,} outputs for a full re-fetch; the daemon runs them when the "
        "tweet quota has room"
    )
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from harvester.simulator import SimulatorSettings, serve

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
    from harvester.demo import run_demo

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

"""The `harvester` command: parse the arguments, hand them to the command, and turn
every failure it expects into one line on stderr and an exit code, here only.

What each command does lives in `harvester.commands`; `run` is the service's daemon
(`service.daemon.run_daemon`), whose report `commands.drain` turns into an exit code.
Exit codes are `model.ExitCode`: 0 success; 1 a failure the message explains (any
`HarvesterError`, or one of SQLite or the OS); 2 a usage error (argparse's); 3 the API
rejected the key; 4 `run --drain` drained the queue but left jobs `failed`. Ctrl-C
exits 130, as shells expect.
"""

# long: the whole command line, every verb with its flags and handler side by side; what
# each command does is in `harvester.commands`.
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester import __version__
from harvester.commands.completers import config_paths, identifier_types, store_tables
from harvester.commands.completion import SHELLS
from harvester.commands.context import CREATING_COMMANDS, Invocation
from harvester.commands.helptext import EXAMPLES, FILES, OVERVIEW, exit_codes
from harvester.errors import CommandError, ConfigError, HarvesterError
from harvester.model import FINAL_STATES, ExitCode, JobState
from harvester.scheduling import ORDERS, TIMEFRAMES

INTERRUPTED = 128 + signal.SIGINT  # the exit status shells give a Ctrl-C
TERMINATED = 128 + signal.SIGTERM

Handler = Callable[[argparse.Namespace, Invocation], int]


def main(argv: list[str] | None = None) -> int:
    """Run one `harvester` command line (default: sys.argv); returns its exit code.

    The one place failures become exit codes: whatever a command expects to go wrong
    is a HarvesterError, reported in one line as 1; so are SQLite's and the OS's."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer, then exit
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    # Each command imports what it uses, once it is chosen: `--version`, `--help` and a
    # completion's TAB stop above, having imported almost nothing (issue 24).
    invocation = Invocation(config_path=args.config, db_path=args.db)
    if args.command not in _OWN_SIGTERM:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[args.command].handle(args, invocation)
    except HarvesterError as error:
        return _failed(args.command, str(error))
    except sqlite3.Error as error:
        from harvester.store.connection import explain_sqlite_error

        return _failed(args.command, explain_sqlite_error(error))
    except BrokenPipeError:
        # `harvester export ... | head`: the reader has what it wanted. Point stdout
        # at /dev/null so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        return _failed(args.command, f"{error.strerror or error}{where}")
    except KeyboardInterrupt:
        _say(f"harvester {args.command}: interrupted", priority="warning")
        return INTERRUPTED
    except Terminated:
        _say(f"harvester {args.command}: terminated", priority="warning")
        return TERMINATED


def _failed(command: str, message: str) -> ExitCode:
    _say(f"harvester {command}: {message}")
    return ExitCode.FAILURE


def _say(message: str, priority: str = "error") -> None:
    from harvester.logs import say

    say(message, priority=priority)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so temporary files are removed on the way."""


def _raise_terminated(_signal: int, _frame: object) -> None:
    raise Terminated


# Left to SIGTERM's own way: `run`'s daemon drains in-flight requests and exits 0
# (so does `demo`'s); `simulate` writes nothing, so ending at once loses nothing, and
# unwinding through its event loop would wait on aiohttp's shutdown instead.
_OWN_SIGTERM = frozenset(("run", "simulate", "demo"))


@dataclass(frozen=True, slots=True)
class Command:
    """One `harvester` command: its help line, its arguments, and what runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handle: Handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester",
        description="Harvest the Altmetric API (the fetch or the free counts call) into a "
        "SQLite store, resumably, at the rate the API allows.",
        epilog=f"{OVERVIEW}\n{exit_codes()}\n\n{FILES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, default=None)
    # The same options after the command (`harvester status --db x`); SUPPRESS keeps a
    # value given before the command when none is given after it.
    after_command = argparse.ArgumentParser(add_help=False)
    _add_global_options(after_command, default=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        examples = EXAMPLES.get(name)
        own_codes = exit_codes(name)  # this command's own, not every command's
        command.arguments(
            subparsers.add_parser(
                name,
                parents=[after_command],
                help=command.help,
                description=_sentence(command.help)
                + (CREATES_STORE if name in CREATING_COMMANDS else ""),
                epilog=f"{examples}\n\n{own_codes}" if examples else own_codes,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    return parser


CREATES_STORE = "\nCreates the store if there is none, and says so on stderr."


def _sentence(text: str) -> str:
    """A help line as a sentence: capitalised, and ended by a full stop unless it ends
    with its own mark ("does the key work ...?")."""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=default,
        help="TOML settings (default: $HARVESTER_CONFIG, ./harvester.toml, the XDG and /etc ones)",
    ).completer = config_paths  # type: ignore[attr-defined]  # argcomplete's hook
    parser.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        default=default,
        help="store path (over $HARVESTER_DB and store.path)",
    )


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


# -- the commands, each its arguments and its call -----------------------------------------


def _enqueue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", metavar="FILE|-")
    parser.add_argument(
        "--type",
        dest="id_type",
        metavar="T",
        help="type of lines without a type: prefix (doi, pmid, arxiv, ...)",
    ).completer = identifier_types  # type: ignore[attr-defined]
    parser.add_argument(
        "--priority",
        type=_priority,
        default=0,
        help="higher runs first (default 0, range -1000000..1000000)",
    )


def _priority(text: str) -> int:
    value = int(text)
    if not -1_000_000 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between -1000000 and 1000000")
    return value


def _enqueue(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.enqueue import cmd_enqueue

    return cmd_enqueue(invocation, args.file, id_type=args.id_type, priority=args.priority)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drain", action="store_true", help="exit 0 once no job is left to run")


def _run(args: argparse.Namespace, invocation: Invocation) -> int:
    import asyncio

    from harvester.commands.context import require_store
    from harvester.commands.drain import run_verdict
    from harvester.config import load_api_key
    from harvester.logs import register_secret
    from harvester.service.daemon import run_daemon
    from harvester.service.tuning import tune_for_a_long_harvest

    settings = invocation.settings()
    if not (settings.schedule.discover_every and not args.drain):
        require_store(settings.store.path)
    elif not settings.store.path.exists():  # a daemon that discovers may start a new one
        _say(
            f"harvester run: no store at {settings.store.path}: creating a new one "
            "([schedule] discover_every finds its outputs)",
            priority="info",
        )
    key = load_api_key(settings)
    register_secret(key.reveal())
    tune_for_a_long_harvest()
    report = asyncio.run(
        run_daemon(settings, key, drain=args.drain, reload_settings=invocation.read_settings)
    )
    return run_verdict(report, drain=args.drain, store_path=settings.store.path)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _status(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.status import cmd_status

    return cmd_status(invocation, as_json=args.json)


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "type", metavar="TYPE", help="doi, pmid, arxiv, isbn, handle, ..."
    ).completer = identifier_types  # type: ignore[attr-defined]
    parser.add_argument("identifier", metavar="IDENTIFIER")
    output_format = parser.add_mutually_exclusive_group()
    output_format.add_argument("--raw", action="store_true", help="write the exact stored bytes")
    output_format.add_argument(
        "--json", action="store_true", help="the metadata and the answer as one JSON object"
    )


def _show(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.show import cmd_show

    return cmd_show(invocation, args.type, args.identifier, raw=args.raw, as_json=args.json)


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--format", choices=("jsonl", "csv", "parquet"))
    what.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="every table as a Parquet dataset in DIR (a folder each, by month), or what "
        "the store gained since DIR's last export",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="with --dataset: write DIR again from the start"
    )
    parser.add_argument(
        "--table",
        metavar="NAME",
        help="a table or view (outputs, mentions, ...); without it, one record per job "
        "that has a response (type, identifier, state, http_status, sha256, fetched_at, mode)",
    ).completer = store_tables  # type: ignore[attr-defined]
    parser.add_argument(
        "--where", metavar="SQL", help="only rows matching this SQL expression (with --table)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="default: stdout")


def _export(args: argparse.Namespace, invocation: Invocation) -> int:
    if args.dataset is not None:
        return _export_dataset(args, invocation)
    if args.rebuild:
        raise CommandError("--rebuild goes with --dataset DIR")
    from harvester.commands.export import cmd_export

    return cmd_export(
        invocation, args.format, table=args.table, where=args.where, output=args.output
    )


def _export_dataset(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.exportdataset import cmd_export_dataset

    given = [flag for flag in ("table", "where", "output") if getattr(args, flag) is not None]
    if given:
        raise CommandError(f"--{given[0]} does not go with --dataset (which writes every table)")
    return cmd_export_dataset(invocation, args.dataset, rebuild=args.rebuild)


def _query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", metavar="SQL")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")


def _query(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.query import cmd_query

    return cmd_query(invocation, args.sql, output_format=args.format)


def _derive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rebuild", action="store_true", help="empty the derived tables first, then derive all"
    )


def _derive(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.derive import cmd_derive

    return cmd_derive(invocation, rebuild=args.rebuild)


def _refresh_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 2w")
    parser.add_argument(
        "--where", metavar="SQL", help="only outputs matching this SQL over latest_outputs"
    )


def _refresh(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.requeue import cmd_refresh

    return cmd_refresh(invocation, args.older_than, where=args.where)


def _verify(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.verify import cmd_verify

    return cmd_verify(invocation)


def _backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--twitter",
        action="store_true",
        required=True,
        help="outputs fetched without (some) Twitter data",
    )


def _backfill(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.requeue import cmd_backfill

    return cmd_backfill(invocation)


def _retry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", choices=[str(state) for state in FINAL_STATES], default=str(JobState.FAILED)
    )


def _retry(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.requeue import cmd_retry

    return cmd_retry(invocation, JobState(args.state))


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8642, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--key", default="simulator-key", help="the key clients must send")
    parser.add_argument(
        "--body-pool",
        type=int,
        default=0,
        metavar="N",
        help="benchmarks: serve N pre-rendered outputs instead of rendering",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="R",
        help="answer 429 beyond R requests/s (a token bucket)",
    )
    parser.add_argument("--rate-limit-burst", type=int, default=1, metavar="B")
    parser.add_argument("--rate-limit-status", type=int, choices=(420, 429), default=429)
    parser.add_argument(
        "--hourly-limit",
        type=int,
        metavar="N",
        help="allow N requests per UTC hour (X-HourlyRateLimit-* headers)",
    )
    parser.add_argument(
        "--daily-limit",
        type=int,
        metavar="N",
        help="allow N requests per UTC day (X-DailyRateLimit-* headers)",
    )
    parser.add_argument(
        "--retry-after", action="store_true", help="send Retry-After with rate-limit refusals"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="replace this fraction of answers with faults (0-1)",
    )
    parser.add_argument(
        "--citations-per-timeframe",
        type=int,
        default=250,
        metavar="N",
        help="outputs each timeframe of the citations call lists",
    )
    _simulate_more_arguments(parser)


def _simulate_more_arguments(parser: argparse.ArgumentParser) -> None:
    """Its answers over time, and the dump it writes instead of serving."""
    parser.add_argument(
        "--steady",
        action="store_true",
        help="answer a re-fetch with the same bytes (by default attention grows: each later "
        "answer about an output has a higher score)",
    )
    parser.add_argument(
        "--make-dump",
        type=Path,
        metavar="PATH",
        help="write a small dump (.tar.gz) of simulated outputs to PATH for trying "
        "`harvester import`, and exit (serves nothing)",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=500,
        metavar="N",
        help="records in the --make-dump dump (default 500)",
    )


def _simulate(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.simulate import cmd_make_dump, cmd_simulate

    if args.make_dump is not None:
        return cmd_make_dump(args.make_dump, args.records)
    return cmd_simulate(
        args.host,
        args.port,
        key=args.key,
        latency_ms=args.latency_ms,
        body_pool=args.body_pool,
        rate_limit=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        rate_limit_status=args.rate_limit_status,
        hourly_limit=args.hourly_limit,
        daily_limit=args.daily_limit,
        retry_after=args.retry_after,
        fault_rate=args.fault_rate,
        citations_per_timeframe=args.citations_per_timeframe,
        attention_grows=not args.steady,
    )


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the dump: .tar.gz, .tar or a directory")
    parser.add_argument(
        "--as-of",
        metavar="DATE",
        help="when the dump was made (YYYY-MM-DD or ISO 8601); default: each file's mtime",
    )


def _import(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.importdump import cmd_import

    return cmd_import(invocation, args.path, as_of=args.as_of)


def _discover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeframe", required=True, choices=TIMEFRAMES, help="outputs with attention in it"
    )
    parser.add_argument(
        "--cited-in", metavar="SOURCES", help="only outputs mentioned in these (e.g. news,policy)"
    )
    parser.add_argument("--doi-prefix", metavar="P", help="only DOIs under this prefix (10.1101)")
    parser.add_argument("--issns", metavar="LIST", help="only these journals (comma list)")
    parser.add_argument(
        "--order-by",
        choices=ORDERS,
        help="default: score (attention gained in the timeframe)",
    )
    parser.add_argument("--max-pages", type=int, default=0, metavar="N", help="at most N pages")
    parser.add_argument(
        "--restart", action="store_true", help="start at page 1, not where a killed run stopped"
    )


def _discover(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.discover import cmd_discover
    from harvester.scheduling import DiscoverQuery, check_discover_query

    query = DiscoverQuery(
        timeframe=args.timeframe,
        cited_in=_comma_list(args.cited_in),
        doi_prefix=(args.doi_prefix or "").strip(),
        issns=tuple(issn.upper() for issn in _comma_list(args.issns)),
        order_by=args.order_by or "",
        max_pages=args.max_pages,
    )
    if args.max_pages < 0:
        raise CommandError("--max-pages must be at least 1 (or 0: every page)")
    try:
        check_discover_query(query, lambda name: "--" + name.replace("_", "-"))
    except ConfigError as error:
        raise CommandError(str(error)) from None
    return cmd_discover(invocation, query, restart=args.restart)


def _comma_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _check(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.check import cmd_check

    return cmd_check(invocation, as_json=args.json)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")


def _serve(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.serve import cmd_serve

    return cmd_serve(invocation, host=args.host, port=args.port)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--example", action="store_true", help="print the example config, every key documented"
    )


def _config(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.configshow import cmd_config
    from harvester.commands.packaged import cmd_config_example

    return cmd_config_example() if args.example else cmd_config(invocation)


def _systemd_unit(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.packaged import cmd_systemd_unit

    return cmd_systemd_unit()


def _completion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to print the script for")


def _completion(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.completion import cmd_completion

    return cmd_completion(args.shell)


def _man(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.completion import cmd_man

    return cmd_man(build_parser())


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=400, help="identifiers to harvest")


def _demo(args: argparse.Namespace, invocation: Invocation) -> int:
    from harvester.commands.demo import cmd_demo  # the simulator, loaded for the demo only
    from harvester.service.daemon import run_daemon

    return cmd_demo(invocation.db_path, args.count, run_daemon)


COMMANDS: dict[str, Command] = {  # in the order `harvester --help` lists them
    "enqueue": Command("queue identifiers from a file or stdin", _enqueue_arguments, _enqueue),
    "import": Command("store Altmetric's JSON dump as answers", _import_arguments, _import),
    "discover": Command(
        "queue the outputs the citations call lists for a timeframe",
        _discover_arguments,
        _discover,
    ),
    "run": Command("run the harvest daemon", _run_arguments, _run),
    "check": Command(
        "one request: does the key work for the configured call?", _status_arguments, _check
    ),
    "status": Command("job counts, throughput and errors", _status_arguments, _status),
    "show": Command("print the stored response of one identifier", _show_arguments, _show),
    "export": Command(
        "a table's rows, or one record per job with a response", _export_arguments, _export
    ),
    "query": Command("run one read-only SQL statement", _query_arguments, _query),
    "derive": Command(
        "fill the derived tables from stored answers not yet derived", _derive_arguments, _derive
    ),
    "refresh": Command(
        "requeue outputs whose latest snapshot is older than an age", _refresh_arguments, _refresh
    ),
    "verify": Command("recompute every stored sha256", _no_arguments, _verify),
    "backfill": Command(
        "re-fetch outputs stored in a degraded quota mode, in full mode",
        _backfill_arguments,
        _backfill,
    ),
    "retry": Command("put finished jobs back to pending", _retry_arguments, _retry),
    "simulate": Command("serve the bundled API simulator", _simulate_arguments, _simulate),
    "serve": Command(
        "open the store read-only in Datasette (extra [web])", _serve_arguments, _serve
    ),
    "config": Command(
        "the config file in use and its settings (--example: every key)",
        _config_arguments,
        _config,
    ),
    "systemd-unit": Command("print the systemd unit to install", _no_arguments, _systemd_unit),
    "completion": Command(
        "print the shell completion script (bash, zsh, fish)", _completion_arguments, _completion
    ),
    "man": Command("print the man page (roff)", _no_arguments, _man),
    "demo": Command("harvest a sample from the simulator, no key needed", _demo_arguments, _demo),
}

"""The words `harvester --help`, each command's `--help` and the man page share: the
examples, the exit codes, and where the config, the store and the key come from."""

from __future__ import annotations

import textwrap

EXIT_CODES = """\
exit codes:
  0  success; for run --drain, every job this run finished ended done or not_found
  1  a failure the message explains (bad input or config, a missing key or store)
  2  a usage error
  3  the API rejected the key (run, discover, check)
  4  run --drain drained the queue but jobs failed during it"""

# What each command's own exit codes mean (its `--help` lists these, not the others').
# 2 (a usage error, argparse's) is every command's; 1 is each command's own failures.
_USAGE = (2, "a usage error (an unknown flag, a missing argument)")
_STORE = "no store at the path, a bad config"
COMMAND_EXIT_CODES: dict[str, tuple[tuple[int, str], ...]] = {
    "enqueue": (
        (0, "every line queued (or queued already)"),
        (1, "a line was rejected, the file was refused, or " + _STORE),
    ),
    "import": (
        (0, "every record stored (or present already)"),
        (1, "a record was rejected, the file is damaged or cut short, PATH is not a dump"),
    ),
    "discover": (
        (0, "every page stored"),
        (
            1,
            "the API refused the query, a page kept failing (run again to resume), a result "
            "named no output, or no key",
        ),
        (3, "the API rejected the key"),
    ),
    "run": (
        (
            0,
            "--drain: the queue drained and every job this run finished ended done or "
            "not_found; any run: stopped by SIGTERM or SIGINT",
        ),
        (1, "a failure that stopped it (a full disk, a damaged store), no key, or " + _STORE),
        (3, "the API rejected the key; unfinished jobs stay pending"),
        (
            4,
            "--drain: the queue drained, but jobs failed during this run (failures left "
            "from earlier runs are named, not counted here)",
        ),
    ),
    "check": (
        (0, "the key works for the configured call"),
        (1, "it could not tell (the API unreachable or failing), or no key"),
        (3, "the API rejected the key"),
    ),
    "status": ((0, "the status was shown"), (1, _STORE)),
    "show": ((0, "the answer was shown"), (1, "no answer stored, or it is damaged; " + _STORE)),
    "export": (
        (0, "every row written"),
        (
            1,
            "an unknown table, a bad --where, an output that is the store; after writing "
            "every row, damaged bodies (written as null); with --dataset, a DIR another "
            "store's or a changed store cannot continue (--rebuild starts over)",
        ),
    ),
    "query": ((0, "the rows were shown"), (1, "SQLite refused it (a write, a syntax error)")),
    "derive": ((0, "every answer derived"), (1, _STORE)),
    "refresh": ((0, "the outputs were requeued"), (1, "a bad age or --where; " + _STORE)),
    "verify": (
        (0, "every stored body is what was received"),
        (1, "a checksum mismatch, or a damaged store file"),
    ),
    "backfill": ((0, "the outputs were queued"), (1, "the counts call is configured; " + _STORE)),
    "retry": ((0, "the jobs were requeued"), (1, _STORE)),
    "simulate": ((0, "stopped by Ctrl-C"), (1, "a bad flag value")),
    "serve": (
        (0, "stopped by Ctrl-C or SIGTERM"),
        (1, "another host, a missing store, Datasette not installed, a port in use"),
    ),
    "config": ((0, "the config was shown"), (1, "a config that does not load")),
    "systemd-unit": ((0, "the unit was printed"),),
    "completion": ((0, "the script was printed"),),
    "man": ((0, "the man page was printed"),),
    "demo": ((0, "the demo harvested its sample"), (1, "a failure the message explains")),
}


def exit_codes(command: str | None = None) -> str:
    """The `exit codes:` block of `harvester --help` (every code), or of one command's
    `--help` (its own codes only; a command without an entry is a KeyError, so that a
    new command cannot ship without them)."""
    if command is None:
        return EXIT_CODES
    codes = [*COMMAND_EXIT_CODES[command], _USAGE]
    return "exit codes:\n" + "\n".join(
        textwrap.fill(meaning, 88, initial_indent=f"  {code}  ", subsequent_indent="     ")
        for code, meaning in sorted(codes)
    )


FILES = """\
files:
  config  --config, else $HARVESTER_CONFIG, else the first found of ./harvester.toml,
          $XDG_CONFIG_HOME/altmetric-harvester/harvester.toml and
          /etc/altmetric-harvester/harvester.toml, else the built-in defaults
  store   --db, else $HARVESTER_DB, else store.path
  key     api.key_file, else $ALTMETRIC_API_KEY, else systemd's credential
          altmetric-api-key"""

OVERVIEW = """\
examples:
  harvester demo                                 # no key: the bundled simulator
  harvester check                                # does the key work?
  harvester enqueue dois.txt && harvester run --drain
  harvester discover --timeframe 1d              # what got attention today
  harvester status
  harvester query "SELECT doi, score FROM latest_outputs ORDER BY score DESC LIMIT 5"
"""

EXAMPLES = {
    "enqueue": """\
examples:
  harvester enqueue dois.txt                 # one identifier per line, or type:identifier
  harvester enqueue --type pmid pmids.txt    # bare identifiers of one type
  cat ids.txt | harvester enqueue -          # from standard input""",
    "discover": """\
examples:
  harvester discover --timeframe 1d
  harvester discover --timeframe 1w --doi-prefix 10.1101 --max-pages 5
  harvester discover --timeframe 1m --cited-in policy --order-by at_score""",
    "run": """\
examples:
  harvester run --drain        # harvest until the queue is empty, then exit
  harvester run                # a daemon: until SIGTERM (SIGHUP reloads the config)""",
    "status": """\
examples:
  harvester status
  harvester status --json | jq .jobs""",
    "query": """\
examples:
  harvester query "SELECT journal, count(*) FROM latest_outputs GROUP BY 1 ORDER BY 2 DESC"
  harvester query --format csv "SELECT * FROM outputs_wide" > wide.csv""",
    "export": """\
examples:
  harvester export --format parquet --table latest_outputs --output latest.parquet
  harvester export --format jsonl --table counts --where "source = 'news'"
  harvester export --dataset /srv/altmetric-dataset    # again later: only what is new
""",
    "refresh": """\
examples:
  harvester refresh --older-than 30d
  harvester refresh --older-than 7d --where "score > 100\"""",
    "completion": """\
examples:
  harvester completion bash > ~/.local/share/bash-completion/completions/harvester
  harvester completion zsh > ~/.zfunc/_harvester
  harvester completion fish > ~/.config/fish/completions/harvester.fish""",
    "man": """\
examples:
  harvester man > harvester.1 && man ./harvester.1""",
}

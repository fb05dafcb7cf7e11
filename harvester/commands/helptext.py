"""The words `harvester --help`, each command's `--help` and the man page share: the
examples, the exit codes, and where the config, the store and the key come from."""

from __future__ import annotations

EXIT_CODES = """\
exit codes:
  0  success; for run --drain, every job ended done or not_found
  1  a failure the message explains (bad input or config, a missing key or store)
  2  a usage error
  3  the API rejected the key (run, discover, check)
  4  run --drain drained the queue but some jobs ended failed"""

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

"""The harvester's errors: one root, so the CLI reports every failure it expects in
one place (one line on stderr, exit 1) and anything else is a bug with a traceback.

Each error's message is written for the person at the terminal: it names the file,
key, identifier or statement at fault and, where it can, what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable

# The commands that create a store where there is none, each saying so once when it
# does (`commands.context`); every other command refuses a missing store, with this hint.
STORE_CREATING_COMMANDS = ("enqueue", "import", "discover")
NO_STORE_HINT = (
    "check --db or store.path; "
    + ", ".join(f"`{name}`" for name in STORE_CREATING_COMMANDS[:-1])
    + f" or `{STORE_CREATING_COMMANDS[-1]}` creates one"
)


class HarvesterError(Exception):
    """A failure the message explains; the CLI prints it and exits 1."""


class ConfigError(HarvesterError, ValueError):
    """The settings file, a setting or the API key is missing or wrong."""


class IdentifierError(HarvesterError, ValueError):
    """An identifier or type that cannot be fetched; the message is the reason."""


class StoreError(HarvesterError, RuntimeError):
    """The store cannot be opened or used as asked."""


class BodyCorrupt(HarvesterError, ValueError):
    """A stored body that cannot be turned back into the bytes that were received."""


class QueryError(HarvesterError, ValueError):
    """SQL the store refused, with the reason in words."""


class DaemonLockError(HarvesterError, RuntimeError):
    """Another daemon (or a command that must run alone) holds the store."""


class CommandError(HarvesterError):
    """A command cannot do what was asked (bad arguments, a missing file...)."""


class UnsafeOutput(CommandError, ValueError):
    """An output path that would write over the store; the message says which file."""


class NotTextError(CommandError, ValueError):
    """An input that is not a text file of identifiers; the message says why."""


class ParquetUnavailable(CommandError, RuntimeError):
    """Parquet export needs pyarrow, an optional extra."""


class DatasetError(HarvesterError, RuntimeError):
    """A Parquet dataset that cannot be written or continued as asked (another store's,
    a schema that moved on, another export writing it); the message says why and what
    to do. The dataset is left as it was."""


class DumpError(HarvesterError, ValueError):
    """A path that is not a readable dump (missing, not a tar archive, no JSON in it);
    the message names it. Damage inside a dump is reported, not raised."""


class DumpDamaged(DumpError):
    """A dump whose bytes fail their own checks (a compressor's CRC or checksum, the tar
    archive's framing) or end early; the message names the file and what is wrong."""


class DiscoverError(HarvesterError, RuntimeError):
    """A discovery that cannot go on (the API refused its query, or a page kept
    failing); where it stopped is saved, so running it again resumes there."""


LISTING_LINE_CHARS = 88  # a long list's lines, indented below its message


def listing(intro: str, names: Iterable[str]) -> str:
    """A list the user must choose from, printed whole: `intro: a, b, c` when that is
    short, else `intro:` and the names on lines of their own, indented. A message
    line is cut in the middle when it runs long (`logs.say`); a list on its own lines
    never is, so the choice the user needs is never the part cut out."""
    names = list(names)
    inline = f"{intro}: {', '.join(names)}"
    if len(inline) <= LISTING_LINE_CHARS:
        return inline
    lines: list[str] = []
    line = ""
    for name in names:
        word = f"{name},"
        if line and len(line) + 1 + len(word) > LISTING_LINE_CHARS - 2:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line.removesuffix(","))
    return f"{intro}:\n" + "\n".join(f"  {text}" for text in lines)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 page`, `2 pages`, `1,204 jobs`: a count with its noun, in the right number."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"

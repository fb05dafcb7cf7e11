"""The harvester's errors: one root, so the CLI reports every failure it expects in
one place (one line on stderr, exit 1) and anything else is a bug with a traceback.

Each error's message is written for the person at the terminal: it names the file,
key, identifier or statement at fault and, where it can, what to do about it.
"""

from __future__ import annotations


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


class DumpError(HarvesterError, ValueError):
    """A path that is not a readable dump (missing, not a tar archive, no JSON in it);
    the message names it. Damage inside a dump is reported, not raised."""


class DumpDamaged(DumpError):
    """A dump whose bytes fail their own checks (a compressor's CRC or checksum, the tar
    archive's framing) or end early; the message names the file and what is wrong."""


class DiscoverError(HarvesterError, RuntimeError):
    """A discovery that cannot go on (the API refused its query, or a page kept
    failing); where it stopped is saved, so running it again resumes there."""

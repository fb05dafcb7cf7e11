"""altmetric-harvester: harvest the Altmetric fetch API into a SQLite store."""

__version__ = "0.1.0"

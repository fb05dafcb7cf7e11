"""altmetric-harvester: harvest the Altmetric fetch API into a SQLite store."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`harvester.open_store` (`harvester.notebook`), imported on first use, so that
    `import harvester` stays as cheap as it was for the CLI and the daemon. By name,
    not by an import statement: modules below the notebook import this package for
    `__version__`, and the layers contract would count it as their import."""
    if name == "open_store":
        return importlib.import_module("harvester.notebook").open_store
    raise AttributeError(f"module 'harvester' has no attribute {name!r}")

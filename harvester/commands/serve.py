"""`harvester serve`: the store in Datasette, read-only, on loopback until Ctrl-C.

Datasette is an optional extra (`pip install 'altmetric-harvester[web]'`). Every table
and column is described, the README's example queries are canned queries, answers are
shown decompressed as JSON, and `latest_outputs` has a search box: its index of titles
is a file of its own in the cache directory, brought up to the store before serving and
every minute after (`harvester.web.search`), so the store itself is only ever read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from harvester.commands.context import Invocation, require_store
from harvester.commands.simulate import LOOPBACK_HOSTS
from harvester.errors import CommandError, HarvesterError
from harvester.model import ExitCode
from harvester.store import Store

NEEDS_DATASETTE = "harvester serve needs Datasette: pip install 'altmetric-harvester[web]'"
_WEB_PACKAGES = ("datasette", "uvicorn", "pluggy", "markupsafe")  # the extra brings them


def cmd_serve(invocation: Invocation, *, host: str, port: int) -> ExitCode:
    """`harvester serve [--host H] [--port N]`: exit 0 once stopped by SIGINT or SIGTERM;
    1 for a bad flag, a missing store or Datasette, or a port that is taken."""
    if host not in LOOPBACK_HOSTS:
        raise CommandError(
            f"harvester serve listens on loopback only (--host 127.0.0.1, localhost or ::1),"
            f" not {host!r}: the store is served to anyone who can connect"
        )
    if not 0 <= port <= 65535:
        raise CommandError("--port must be between 0 (any free port) and 65535")
    try:
        from harvester.web import app
    except ImportError as error:
        if (error.name or "").split(".")[0] not in _WEB_PACKAGES:
            raise
        raise CommandError(NEEDS_DATASETTE) from None
    path = invocation.settings().store.path
    require_store(path)
    with Store(path, read_only=True) as store:
        pass  # someone else's database, or a store that needs an upgrade, is refused here
    home, immutable = store.opened_as, store.immutable  # its home name (`store.home`)
    try:  # before the index is brought up to date, which may take minutes: a port
        listener = app.listen(host, port)  # in use is said at once
    except OSError as error:
        raise CommandError(f"cannot listen on {host} port {port}: {error.strerror}") from None
    with listener:
        index = _search_index(home)  # one index for the store, whatever name it is given by
        datasette = app.make_datasette(path, index)
        url = app.url_of(host, listener)
        how = "an immutable file (its directory is read-only); " if immutable else ""
        print(f"serving {path} read-only on {url} ({how}Ctrl-C stops)", flush=True)
        app.serve(datasette, listener, refresh=None if index is None else _refresher(home, index))
    return ExitCode.OK


def _search_index(path: Path) -> Path | None:
    """The search index, brought up to the store; None (no search box) if it cannot be
    written, which is said, but the store is served all the same."""
    from harvester.web import search

    index = search.index_path(path)
    started_s = time.monotonic()
    try:
        refreshed = search.refresh(path, index)
    except (HarvesterError, OSError) as error:
        print(f"serving without search: {error}", file=sys.stderr)
        return None
    if refreshed.indexed:
        print(
            f"search: indexed {refreshed.indexed:,} of {refreshed.outputs:,} outputs in"
            f" {time.monotonic() - started_s:.1f} s ({index})",
            file=sys.stderr,
        )
    return index


def _refresher(path: Path, index: Path) -> Callable[[], None]:
    from harvester.web import search

    def refresh_search_index() -> None:
        search.refresh(path, index)

    return refresh_search_index

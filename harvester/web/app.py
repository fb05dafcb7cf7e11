"""The store in Datasette, read-only, served on a socket until SIGINT or SIGTERM.

Datasette opens a file it may change with `?mode=ro` and keeps a write connection
for plugins that write; `StoreDatabase` gives it only read connections (`mode=ro`,
`query_only` on) and refuses the write one, so nothing it runs can change the store.
`mode=ro` rather than `immutable=1`: the daemon may be writing the store (WAL), and
an immutable file is read without locks, as if nobody ever did. Except where nothing
can write it, in a read-only directory (`store.connection.reads_immutable`): there
SQLite could not open it `mode=ro`, and the store is one of Datasette's immutable
files (exact row counts, counted once at startup).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from datasette.app import Datasette
from datasette.database import Database

from harvester.errors import StoreError
from harvester.logs import get_logger
from harvester.store.connection import read_uri, reads_immutable
from harvester.store.home import reach
from harvester.web import plugin
from harvester.web.metadata import store_metadata
from harvester.web.plugin import StoreConnection

SEARCH_SCHEMA = "search"  # the name the search index is attached under

log = get_logger("harvester.web.app")


class StoreDatabase(Database):  # type: ignore[misc]
    """The store as a Datasette database whose connections can only read it, each with
    the search index (if any) attached, read-only too."""

    def __init__(self, datasette: Datasette, store_path: Path, search_path: Path | None) -> None:
        home = reach(store_path)  # the name every process opens it by (`store.home`)
        immutable = reads_immutable(home)
        super().__init__(datasette, path=str(home), is_mutable=not immutable)
        if immutable:  # Datasette would hash the whole file for its ETag: its identity will do
            status = home.stat()
            self.cached_hash = f"{status.st_ino:x}-{status.st_size:x}-{status.st_mtime_ns:x}"
        self.store_uri = read_uri(home, immutable=immutable)
        self.search_uri = (
            None if search_path is None else f"{search_path.resolve().as_uri()}?mode=ro"
        )

    def connect(self, write: bool = False) -> sqlite3.Connection:
        if write:
            raise StoreError("the store is served read-only: nothing may write to it")
        conn = sqlite3.connect(
            self.store_uri, uri=True, check_same_thread=False, factory=StoreConnection
        )
        try:
            conn.execute("PRAGMA query_only = ON")
            if self.search_uri is not None:
                conn.execute(f"ATTACH DATABASE ? AS {SEARCH_SCHEMA}", (self.search_uri,))
        except sqlite3.Error:
            conn.close()
            raise
        self._all_file_connections.append(conn)
        return conn


def make_datasette(
    store_path: Path, search_path: Path | None, *, sql_threads: int | None = None
) -> Datasette:
    """Datasette with the store (named after its file) and nothing else, its metadata,
    and the plugin that shows answers decompressed. `sql_threads=0` runs every query
    on the event loop's thread, with connections `close` can reach (the tests')."""
    plugin.register()
    name = store_path.stem
    settings = {} if sql_threads is None else {"num_sql_threads": sql_threads}
    datasette = Datasette(
        metadata=store_metadata(name, searchable=search_path is not None), settings=settings
    )
    if "_memory" in datasette.databases:  # added when no file is given: not wanted
        datasette.remove_database("_memory")
    datasette.add_database(StoreDatabase(datasette, store_path, search_path), name=name)
    return datasette


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host` (port 0: any free one), before serving starts, so
    the URL printed is the one served."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def url_of(host: str, listener: socket.socket) -> str:
    port = listener.getsockname()[1]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn, leaving the signals to `serve` (uvicorn re-raises a SIGTERM after its
    graceful stop, which would end the process with -15 rather than 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass


def serve(
    datasette: Datasette,
    listener: socket.socket,
    *,
    refresh: Callable[[], Any] | None = None,
    refresh_every_s: float = 60.0,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (requests in flight end);
    meanwhile call `refresh` every `refresh_every_s` on a thread of its own."""
    config = uvicorn.Config(datasette.app(), lifespan="on", log_level="info")
    server = _Server(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C: stop now
        server.should_exit = True

    with _handling((signal.SIGINT, signal.SIGTERM), stop), _every(refresh, refresh_every_s):
        asyncio.run(server.serve(sockets=[listener]))


@contextlib.contextmanager
def _handling(
    signals: tuple[signal.Signals, ...], handler: Callable[[int, FrameType | None], None]
) -> Iterator[None]:
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _every(task: Callable[[], Any] | None, every_s: float) -> Iterator[None]:
    """`task` every `every_s` on a daemon thread while the block runs; a failure is
    logged, and the next run tries again."""
    stopping = threading.Event()

    def loop() -> None:
        while task is not None and not stopping.wait(every_s):
            try:
                task()
            except Exception as error:
                log.warning(
                    "periodic task failed", task=getattr(task, "__name__", "?"), error=str(error)
                )

    thread = threading.Thread(target=loop, name="search-refresh", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(timeout=5)

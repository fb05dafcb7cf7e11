"""`harvester serve`: what it refuses before serving anything, and the server itself,
run as users run it, stopped by SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helpers import run_main

import harvester.web
from harvester.commands.serve import NEEDS_DATASETTE

Serving = Callable[[Path], AbstractContextManager[tuple[str, "subprocess.Popen[str]"]]]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback)
        return json.load(response)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_on_loopback_until_stopped_and_exits_0(
    stop: signal.Signals,
    harvested_by_cli: Callable[[int], Path],
    serving: Serving,
    tmp_path: Path,
) -> None:
    store = harvested_by_cli(40)
    with serving(store) as (url, process):
        assert url.startswith("http://127.0.0.1:")
        progress = get_json(f"{url}harvested/harvest-progress.json?_shape=array")
        assert progress == [{"state": "done", "count(*)": 40}]
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    assert len([*(tmp_path / "cache" / "altmetric-harvester").glob("harvested-*.search.db")]) == 1
    assert "search: indexed 40 of 40 outputs" in err


def test_serve_refuses_a_host_that_is_not_loopback(
    capsys: pytest.CaptureFixture[str], harvested_by_cli: Callable[[int], Path]
) -> None:
    store = str(harvested_by_cli(40))
    code, _, err = run_main(capsys, "--db", store, "serve", "--host", "0.0.0.0")  # noqa: S104
    assert code == 1
    assert "listens on loopback only (--host 127.0.0.1, localhost or ::1), not '0.0.0.0'" in err
    code, _, err = run_main(capsys, "--db", store, "serve", "--port", "70000")
    assert (code, "--port must be between 0" in err) == (1, True)


def test_serve_needs_a_store_that_exists(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_main(capsys, "--db", str(tmp_path / "nowhere.db"), "serve")
    assert code == 1
    assert f"no store at {tmp_path / 'nowhere.db'}" in err
    assert not (tmp_path / "nowhere.db").exists()


def test_serve_says_how_to_install_datasette_when_it_is_missing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    harvested_by_cli: Callable[[int], Path],
) -> None:
    monkeypatch.setitem(sys.modules, "datasette", None)  # import datasette: ImportError
    monkeypatch.setitem(sys.modules, "datasette.app", None)
    monkeypatch.delitem(sys.modules, "harvester.web.app", raising=False)
    monkeypatch.delattr(harvester.web, "app", raising=False)
    code, _, err = run_main(capsys, "--db", str(harvested_by_cli(40)), "serve")
    assert code == 1
    assert NEEDS_DATASETTE in err
    assert "pip install 'altmetric-harvester[web]'" in NEEDS_DATASETTE


def test_serve_says_so_when_the_port_is_taken(
    capsys: pytest.CaptureFixture[str], harvested_by_cli: Callable[[int], Path]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        code, _, err = run_main(capsys, "--db", str(harvested_by_cli(40)), "serve", "--port", port)
    assert code == 1
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in err


def test_serve_serves_without_search_when_the_index_cannot_be_written(
    harvested_by_cli: Callable[[int], Path], serving: Serving, tmp_path: Path
) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory would be")
    with serving(harvested_by_cli(40)) as (url, process):
        with urllib.request.urlopen(f"{url}harvested/latest_outputs", timeout=30) as page:  # noqa: S310
            assert 'name="_search"' not in page.read().decode()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "serving without search: " in err

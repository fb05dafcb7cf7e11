"""`harvester serve` in a real headless browser (Debian's chromium): the table page of
the latest outputs, a search, a canned query and a decompressed answer, as rendered,
then the server stopped with Ctrl-C. Skipped, saying why, only where no chromium is."""

from __future__ import annotations

import html
import re
import shutil
import signal
import subprocess
import unicodedata
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helpers import rows

from harvester.store import Store
from harvester.web.metadata import README_QUERIES
from harvester.web.plugin import pretty

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

Serving = Callable[[Path], AbstractContextManager[tuple[str, "subprocess.Popen[str]"]]]


@pytest.fixture
def browser(tmp_path: Path) -> Callable[[str], str]:
    """`render(url)`: the DOM a headless chromium renders for `url`, as text."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip(f"no chromium on PATH (tried {', '.join(BROWSERS)}): apt-get install chromium")

    def render(url: str) -> str:
        result = subprocess.run(
            [
                found, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "<html" in result.stdout, result.stderr[-3000:]
        return result.stdout

    return render


def cells(dom: str, column: str) -> list[str]:
    """The text of a results table's cells in `column`, top to bottom."""
    found = re.findall(rf'<td class="col-{column}\b[^"]*"[^>]*>(.*?)</td>', dom, flags=re.DOTALL)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]


def words(text: str) -> list[str]:
    """The words FTS5 finds in `text` (unicode61, diacritics removed), lowercased."""
    folded = unicodedata.normalize("NFKD", text.lower())
    return re.findall(r"\w+", "".join(c for c in folded if not unicodedata.combining(c)))


def test_a_browser_browses_searches_and_queries_the_served_store(
    browser: Callable[[str], str],
    serving: Serving,
    harvested_by_cli: Callable[[int], Path],
) -> None:
    store = harvested_by_cli(40)
    latest = rows(store, "SELECT title, journal, score FROM latest_outputs ORDER BY response_id")
    counted = Counter(
        word
        for title, *_ in latest
        for word in set(words(title))
        if len(word) > 3 and word.isascii()
    )
    word = max(sorted(counted), key=counted.__getitem__)  # the titles' commonest word
    with serving(store) as (url, process):
        dom = browser(f"{url}harvested/latest_outputs")
        assert "40 rows" in html.unescape(dom)
        assert "The latest snapshot of each output" in dom  # the table's description
        assert sorted(cells(dom, "title")) == sorted(title for title, *_ in latest)

        dom = browser(f"{url}harvested/latest_outputs?_search={word}")
        found = [title for title, *_ in latest if word in words(title)]
        assert f'{len(found)} rows where search matches "{word}"' in html.unescape(dom)
        assert sorted(cells(dom, "title")) == sorted(found)

        top = README_QUERIES[0]  # the 20 highest-scoring outputs in Nature
        dom = browser(f"{url}harvested/{top.name}?journal=Nature")  # the form, filled in
        assert top.title in html.unescape(dom)
        assert cells(dom, "title") == [title for _, title, _ in rows(store, top.sql)] != []

        dom = browser(f"{url}harvested/bodies/1")
        with Store(store, read_only=True) as opened:
            answer = opened.bodies.of_response(1)
        assert cells(dom, "data") == [pretty(answer)]
        assert '\n  "altmetric_id": ' in pretty(answer)  # JSON, indented

        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err

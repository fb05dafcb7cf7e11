"""What a user installs: the wheel and the sdist as `python -m build` makes them, the
metadata an index shows, the files the wheel carries and the commands that print them.

The build (a few seconds, isolated, setuptools from the configured index) runs once for
the module; it skips only where `build` itself is missing.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from helpers import ROOT, harvester, run_main

import harvester as package
from harvester.commands.packaged import EXAMPLE_CONFIG, SYSTEMD_UNIT, packaged_text

DATA = ROOT / "harvester" / "data"
# The checkout's paths that people and older docs know: symlinks to the shipped files.
CHECKOUT_COPIES = {
    ROOT / "config" / "harvester.example.toml": DATA / EXAMPLE_CONFIG,
    ROOT / "systemd" / "altmetric-harvester.service": DATA / SYSTEMD_UNIT,
}
CLASSIFIERS = {
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Operating System :: POSIX :: Linux",
    "Topic :: Scientific/Engineering",
    "Framework :: AsyncIO",
    "Typing :: Typed",
    "Environment :: No Input/Output (Daemon)",
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist), built from the checkout into a temporary directory."""
    pytest.importorskip("build", reason="`build` is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_carries_the_marker_the_data_and_the_license(dist: tuple[Path, Path]) -> None:
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for shipped in (EXAMPLE_CONFIG, SYSTEMD_UNIT):
            assert archive.read(f"harvester/data/{shipped}").decode() == packaged_text(shipped)
    assert "harvester/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_wheel_metadata_names_license_version_and_classifiers(
    dist: tuple[Path, Path],
) -> None:
    meta = metadata(dist[0])
    assert meta["Metadata-Version"] >= "2.4"
    assert meta["License-Expression"] == "MIT"
    assert meta["Version"] == package.__version__
    assert set(meta.get_all("Classifier") or []) >= CLASSIFIERS
    # PEP 639: the expression replaces the classifier; both at once is refused.
    assert not any(c.startswith("License ::") for c in meta.get_all("Classifier") or [])
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert meta["Requires-Python"] == ">=3.11"


def test_the_installed_wheel_prints_its_own_files(dist: tuple[Path, Path], tmp_path: Path) -> None:
    """Imported from the wheel itself (a zip), not the checkout: the files are read as
    package resources, never by a path next to the source."""
    wheel, _ = dist
    script = (
        "import harvester, sys\n"
        "assert harvester.__file__.startswith(sys.argv[1]), harvester.__file__\n"
        "from harvester.commands.packaged import cmd_systemd_unit\n"
        "raise SystemExit(cmd_systemd_unit())\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(wheel)}
    shown = subprocess.run(
        [sys.executable, "-c", script, str(wheel)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,  # not the checkout, which `-c` would put first on the path
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (DATA / SYSTEMD_UNIT).read_text()


def test_the_sdist_holds_the_license_and_the_shipped_files(dist: tuple[Path, Path]) -> None:
    _, sdist = dist
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in ("LICENSE", "pyproject.toml", "README.md", "harvester/py.typed"):
        assert needed in names
    assert {f"harvester/data/{EXAMPLE_CONFIG}", f"harvester/data/{SYSTEMD_UNIT}"} <= names


def test_the_checkout_paths_are_the_shipped_files() -> None:
    for path, shipped in CHECKOUT_COPIES.items():
        assert path.resolve() == shipped.resolve(), f"{path} should be a symlink to {shipped}"


def test_config_example_and_systemd_unit_print_the_shipped_files_exactly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(capsys, "config", "--example") == (
        0,
        (DATA / EXAMPLE_CONFIG).read_text(),
        "",
    )
    assert run_main(capsys, "systemd-unit") == (0, (DATA / SYSTEMD_UNIT).read_text(), "")


def test_systemd_unit_as_a_process_can_be_piped_into_a_file(tmp_path: Path) -> None:
    shown = harvester("systemd-unit", cwd=tmp_path)  # not the checkout: no file beside it
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout == (DATA / SYSTEMD_UNIT).read_text()


def test_the_version_is_written_once_and_cited_as_it_is() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "harvester.__version__"}
    citation = (ROOT / "CITATION.cff").read_text()
    assert f'\nversion: "{package.__version__}"\n' in citation
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog


def test_the_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the altmetric-harvester authors" in text

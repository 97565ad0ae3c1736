"""The release is spelled once: VERSION in bootstrap.py. pyproject.toml and the package derive it, so a release
changes one line (cut_release.py), and nothing else goes on saying the old release as if it were the current one.
"""
import importlib
import importlib.metadata
import tomllib

from tests.unit.conftest import REPO


def test_bootstrap_defines_the_release_in_one_date_based_line(bootstrap, cut_release):
    text = (REPO / "bootstrap.py").read_text()
    assert len(list(cut_release.VERSION_LINE.finditer(text))) == 1  # what hatchling reads for the wheel
    assert cut_release.current_version(REPO) == bootstrap.VERSION
    cut_release.release_key(bootstrap.VERSION)  # date-based: YYYY.MM.N


def test_pyproject_reads_the_release_from_bootstrap():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    # hatchling's regex source with its default pattern, which cut_release.VERSION_LINE is
    assert pyproject["tool"]["hatch"]["version"] == {"path": "bootstrap.py"}


def test_the_package_reports_the_release_its_metadata_has(monkeypatch):
    """barehub.__version__ is the installed distribution's version, which the wheel took from bootstrap.py."""
    import barehub

    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"barehub": "2001.01.1"}[name])
    try:
        assert importlib.reload(barehub).__version__ == "2001.01.1"
    finally:
        monkeypatch.undo()
        importlib.reload(barehub)


def test_no_code_spells_the_current_release_but_its_definition(bootstrap, cut_release):
    """A string holding this release in code or tests (not its history in comments and docstrings) would go on
    saying it after the next release is cut: it derives it (bootstrap.VERSION, this_release()) instead."""
    assert cut_release.spellings(REPO, bootstrap.VERSION) == []

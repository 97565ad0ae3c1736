"""Checking the hub's config without side effects: no database, no secrets written, no proxy contact.

`jupyterhub --show-config` is not usable for this: it initializes the hub (DB, cookie secret).
Here the config is only *loaded*, the way the hub loads it, and every `c.Section.option` is checked
against the traits of the class the hub would configure with it.
"""
from __future__ import annotations

import difflib
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from traitlets import TraitError
from traitlets.config import Config, Configurable, LazyConfigValue
from traitlets.config.loader import PyFileConfigLoader

from barehub.config_loading import fragment_files
from barehub.paths import Paths, base_config_file


@dataclass(frozen=True)
class Problem:
    file: Optional[Path]
    line: Optional[int]
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else str(self.file or "config")
        return f"{where}: {self.message}"


def load_config(paths: Paths) -> Config:
    """The hub's full config (base + fragments), loaded as `jupyterhub -f` would load it."""
    os.environ["BAREHUB_PREFIX"] = str(paths.prefix)
    base = base_config_file()
    return PyFileConfigLoader(base.name, path=str(base.parent)).load_config()


def problem_from_exception(exc: BaseException, fragments: list[Path]) -> Problem:
    """Name the fragment file and line where loading failed."""
    names = {str(p) for p in fragments}
    if isinstance(exc, SyntaxError) and exc.filename in names:
        return Problem(Path(exc.filename), exc.lineno, f"SyntaxError: {exc.msg}")
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in names:
            return Problem(Path(frame.filename), frame.lineno, f"{type(exc).__name__}: {exc}")
    return Problem(None, None, f"{type(exc).__name__}: {exc}")


def configurable_classes(config: Config) -> tuple[dict[str, type], list[type]]:
    """All configurable classes by name, and the classes the hub will instantiate."""
    from jupyterhub.app import JupyterHub

    hub_traits = JupyterHub.class_traits(config=True)
    chosen: list[type] = [JupyterHub]
    for option in ("authenticator_class", "spawner_class", "proxy_class"):
        value = config.JupyterHub.get(option, hub_traits[option].default_value)
        try:
            chosen.append(hub_traits[option].validate(None, value))
        except Exception:  # reported with its file:line by check_config, as a bad value
            continue
    known: dict[str, type] = {}

    def add(cls: type) -> None:
        for klass in cls.mro():
            if isinstance(klass, type) and issubclass(klass, Configurable) and klass.__name__ not in known:
                known[klass.__name__] = klass
                for sub in klass.__subclasses__():
                    add(sub)

    for cls in [*chosen, *JupyterHub(config=Config()).classes]:
        add(cls)
    return known, chosen


def options_of(section: type, chosen: Iterable[type]) -> dict:
    """Config traits that `c.<section>.x` can set: the section's own, plus those of any chosen
    subclass (traitlets hands a base section's options to the subclass instance)."""
    traits = dict(section.class_traits(config=True))
    for cls in chosen:
        if issubclass(cls, section):
            traits.update(cls.class_traits(config=True))
    return traits


def check_value(trait, value) -> Optional[str]:
    if isinstance(value, LazyConfigValue):
        return None
    try:
        trait.validate(None, value)
    except TraitError as e:
        return str(e).split("\n")[0].replace(" of None instance", "")
    except Exception:  # a validator that needs a live instance: not checkable statically
        return None
    return None


def locate(section: str, key: str, fragments: list[Path]) -> tuple[Optional[Path], Optional[int]]:
    """The fragment line that sets c.<section>.<key> last (later fragments win)."""
    pattern = re.compile(rf"\b{re.escape(section)}\s*\.\s*{re.escape(key)}\b")
    for path in reversed(fragments):
        lines = path.read_text(errors="replace").splitlines()
        for number in range(len(lines), 0, -1):
            if pattern.search(lines[number - 1]):
                return path, number
    return None, None


def suggestion(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_config(config: Config, fragments: list[Path]) -> list[Problem]:
    known, chosen = configurable_classes(config)
    problems: list[Problem] = []
    for section_name in sorted(config):
        section = config[section_name]
        if not isinstance(section, Config):
            continue
        if section_name not in known:
            file, line = locate(section_name, "", fragments)
            problems.append(Problem(file, line, f"c.{section_name} is not a configurable class that is installed"
                                    f"{suggestion(section_name, known)}"))
            continue
        traits = options_of(known[section_name], chosen)
        for key, value in section.items():
            file, line = locate(section_name, key, fragments)
            if key not in traits:
                problems.append(Problem(file, line, f"c.{section_name}.{key} is not an option of {section_name}"
                                        f"{suggestion(key, traits)}"))
                continue
            error = check_value(traits[key], value)
            if error:
                problems.append(Problem(file, line, f"c.{section_name}.{key}: {error}"))
    return problems


def validate(paths: Paths) -> tuple[list[Path], list[Problem]]:
    """Load and check the hub's config. Returns the fragments read and the problems found."""
    fragments = fragment_files(paths.config_d)
    try:
        config = load_config(paths)
    except Exception as e:  # anything a fragment raises is a problem to report, not a crash
        return fragments, [problem_from_exception(e, fragments)]
    problems = check_config(config, fragments)
    return fragments, sorted(problems, key=lambda p: (str(p.file), p.line or 0))

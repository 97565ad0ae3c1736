"""The table of install settings is the one owner of a setting: both parsers, the argv bootstrap.py hands on,
README's flag list and the merging of a run's settings must all say what it says."""
import argparse
import re

import pytest

from barehub.base import install_settings
from barehub.base.errors import BarehubError
from barehub.base.install_settings import FLAGS, SETTINGS, merge
from barehub.cli import build_parser
from barehub.settings import Settings
from tests.unit.conftest import REPO

GROUP = "install settings (remembered)"


def install_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["install"]


def group_flags(parser: argparse.ArgumentParser) -> list[str]:
    group = next(g for g in parser._action_groups if g.title == GROUP)
    return [a.option_strings[0] for a in group._group_actions]


def readme_rows() -> dict[str, str]:
    """`--flag` -> its default, from the table under README's "## Install"."""
    install = REPO.joinpath("README.md").read_text().split("\n## Install\n")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \| ([^|]+) \|", install, re.M)
    return {flag: default.strip() for flag, default in rows}


def test_the_table_the_parsers_and_the_readme_list_the_same_flags(bootstrap, capsys):
    table = [s.flag_name for s in FLAGS]
    assert group_flags(install_parser()) == table
    with pytest.raises(SystemExit):
        bootstrap.parse_args(["--help"])
    help_text = capsys.readouterr().out.split(GROUP + ":")[1]
    assert re.findall(r"^  (--[a-z-]+)", help_text, re.M) == [s.flag_name for s in FLAGS if s.bootstrap]
    assert readme_rows() == {s.flag_name: s.default_text for s in FLAGS}


def test_every_option_of_the_installer_is_a_setting_of_the_table():
    """An option the installer accepts but the table does not know would be parsed and then dropped."""
    dests = {a.dest for a in install_parser()._actions} - {"help", "prefix"}
    assert dests == {s.name for s in FLAGS}


def test_what_bootstrap_is_given_reaches_the_installer_unchanged(bootstrap):
    samples = {int: "8123", bool: None, tuple: "a.org"}
    argv = []
    for s in FLAGS:
        if not s.bootstrap or s.name in ("no_https", "tls_cert", "tls_key"):  # they contradict --letsencrypt-domain
            continue
        value = s.arg.get("choices", [samples.get(s.type, "postgresql://hub@db/hub" if s.name == "db_url" else "/x")])[0]
        argv += [s.flag_name, value] if value else [s.flag_name]
    given = install_settings.given_settings(bootstrap.parse_args(argv))
    handed_on = bootstrap.settings_table.settings_argv(bootstrap.parse_args(argv))
    assert install_settings.given_settings(install_parser().parse_args(handed_on)) == {**given, "hub_port": None,
                                                                                       "proxy_api_port": None}


def test_the_record_has_a_field_per_remembered_setting_with_its_default():
    assert {name: getattr(Settings(), name) for name in Settings.__dataclass_fields__} == \
        {s.name: s.default for s in SETTINGS if s.remembered}
    assert Settings.HUB_FIELDS == ("http_port", "hub_port", "proxy_api_port", "hub_user", "db_url",
                                   "db_password_file")  # the digest's order


def test_a_flag_beats_the_remembered_value_which_beats_the_default():
    remembered = {"http_port": 8000, "trusted_proxies": ["10.0.0.1"], "hub_sudo": True, "unknown": 1}
    assert merge({}, {})["http_port"] == 80
    values = merge(remembered, {"http_port": None, "https_port": 8443})
    assert (values["http_port"], values["https_port"], values["trusted_proxies"]) == (8000, 8443, ("10.0.0.1",))
    assert "unknown" not in values and "no_https" not in values
    assert merge(remembered, {"http_port": 81, "trusted_proxies": [""], "hub_sudo": "no"})["http_port"] == 81
    assert merge(remembered, {"trusted_proxies": [""], "hub_sudo": "no"})["trusted_proxies"] == ()
    assert merge(remembered, {"hub_sudo": "no"})["hub_sudo"] is False


def test_a_certificate_source_replaces_the_other_and_no_https_forgets_both():
    acme = merge({}, {"acme_domains": ["a.org"], "acme_email": "x@a.org"})
    assert install_settings.https_on(acme) and acme["acme_domains"] == ("a.org",)
    own = merge(acme, {"tls_cert": "/c", "tls_key": "/k"})
    assert own["acme_domains"] == () and own["tls_cert"] == "/c" and install_settings.https_on(own)
    assert merge(own, {"acme_domains": ["b.org"]})["tls_cert"] == ""
    off = merge(own, {"no_https": True})
    assert not install_settings.https_on(off) and (off["tls_cert"], off["tls_key"]) == ("", "")
    assert off["acme_email"] == "x@a.org"  # the account's contact stays for a later --letsencrypt-domain


@pytest.mark.parametrize("name, value", [("trusted_proxies", 5), ("http_port", "80"), ("http_port", True),
                                         ("acme_domains", "hub.example.org")])
def test_a_remembered_value_of_the_wrong_type_is_named_not_a_traceback(name, value):
    """The record may be an older release's, and one in state/ was the hub user's to write."""
    with pytest.raises(BarehubError) as refused:
        install_settings.merge({name: value}, {})
    assert f"the remembered install setting {name} is {value!r}" in refused.value.message


def test_a_remembered_null_is_the_default():
    assert install_settings.merge({"acme_email": None}, {})["acme_email"] == ""

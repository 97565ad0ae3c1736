"""The base config + fragments, loaded as the hub loads them."""
import base64
import hashlib

import pytest

from barehub.validation import load_config


def write(prefix, name, text):
    (prefix.config_d / name).write_text(text)


def test_defaults_without_fragments_are_useful_and_safe(prefix):
    c = load_config(prefix)
    assert c.JupyterHub.cleanup_servers is False
    assert c.Proxy.should_start is False
    assert c.JupyterHub.proxy_class == "barehub.traefik_proxy.BarehubTraefikProxy"
    assert c.JupyterHub.db_url == f"sqlite:///{prefix.db_file}"
    assert c.Spawner.cmd == [str(prefix.env_bin / "barehub-singleuser")]
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler", "barehub"]
    assert "--timeout=3600" in c.JupyterHub.services[0]["command"]
    # PAM login for the machine's users, never root; no dummy authenticator
    assert "authenticator_class" not in c.JupyterHub
    assert c.PAMAuthenticator.allow_all is True
    assert c.Authenticator.blocked_users == {"root"}


def test_traefik_api_hash_is_the_passwords_cheap_htpasswd_sha(prefix):
    c = load_config(prefix)
    hashed = c.TraefikProxy.traefik_api_hashed_password
    # traefik checks it on every API call (bench/results.md): no bcrypt, at any cost
    assert hashed == "{SHA}" + base64.b64encode(hashlib.sha1(c.TraefikProxy.traefik_api_password.encode()).digest()).decode()
    assert len(c.TraefikProxy.traefik_api_password) >= 64  # 256 random bits: nothing for a slow hash to shield


def test_fragments_load_in_lexicographic_order_and_override_the_base(prefix):
    write(prefix, "20-b.py", "c.Spawner.default_url = '/b'\n")
    write(prefix, "10-a.py", "c.Spawner.default_url = '/a'\nc.JupyterHub.cleanup_servers = True\n")
    write(prefix, "README.md", "not python")
    write(prefix, ".hidden.py", "raise SystemExit('must not load')")
    c = load_config(prefix)
    assert c.Spawner.default_url == "/b"
    assert c.JupyterHub.cleanup_servers is True


@pytest.mark.parametrize("fragment", [
    "c.Authenticator.allowed_users = {'alice'}\n",
    "c.PAMAuthenticator.allowed_groups = {'students'}\n",
    "c.JupyterHub.authenticator_class = 'dummy'\n",
])
def test_any_allow_config_or_other_authenticator_turns_off_the_pam_allow_all(prefix, fragment):
    write(prefix, "50-auth.py", fragment)
    c = load_config(prefix)
    assert "allow_all" not in c.PAMAuthenticator


def test_shipped_idle_culler_drop_in_replaces_the_default(prefix):
    from barehub.package_files import shipped

    write(prefix, "40-culler.py", (shipped("jupyterhub_config.d") / "idle-culler.py").read_text())
    services = load_config(prefix).JupyterHub.services
    culler = [s for s in services if s["name"] == "idle-culler"]
    assert len(culler) == 1 and "--timeout=7200" in culler[0]["command"]


def test_the_shipped_drop_ins_advanced_recipe_replaces_barehubs_culler(prefix):
    from barehub.package_files import shipped

    text = (shipped("jupyterhub_config.d") / "idle-culler.py").read_text()
    recipe = text[text.index("# from barehub"):text.index("# })") + 4]
    recipe = "\n".join(line.removeprefix("# ") for line in recipe.splitlines() if line.startswith("# "))
    write(prefix, "40-culler.py", recipe + "\n")
    c = load_config(prefix)
    culler = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert len(culler) == 1 and "--cull-users" in culler[0]["command"]
    roles = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert len(roles) == 1 and "admin:users" in roles[0]["scopes"]


def test_idle_timeout_tunes_the_culler_even_after_services_are_assigned(prefix):
    write(prefix, "50-services.py", DOCS_SERVICES + "c.Barehub.idle_timeout = 15\n")
    culler = [s for s in load_config(prefix).JupyterHub.services if s["name"] == "idle-culler"]
    assert len(culler) == 1 and "--timeout=15" in culler[0]["command"]


DOCS_SERVICES = '''
c.JupyterHub.services = [{"name": "announcements", "url": "http://127.0.0.1:8888", "api_token": "x" * 32}]
c.JupyterHub.load_roles = [{"name": "teachers", "scopes": ["admin:users"], "users": ["alice"]}]
'''


def test_a_fragment_that_assigns_services_and_roles_keeps_the_culler_and_barehubs_service(prefix):
    write(prefix, "50-services.py", DOCS_SERVICES)
    c = load_config(prefix)
    assert [s["name"] for s in c.JupyterHub.services] == ["announcements", "idle-culler", "barehub"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["teachers", "idle-culler", "barehub"]


def test_the_culler_goes_only_with_the_explicit_switch(prefix):
    write(prefix, "50-services.py", DOCS_SERVICES + "c.Barehub.idle_culler = False\n")
    c = load_config(prefix)
    assert [s["name"] for s in c.JupyterHub.services] == ["announcements", "barehub"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["teachers", "barehub"]


@pytest.mark.parametrize("fragment, section", [
    ("c.Authenticator.blocked_users = {'mallory'}\n", "Authenticator"),
    ("c.PAMAuthenticator.blocked_users = {'mallory'}\n", "PAMAuthenticator"),
    ("c.JupyterHub.authenticator_class = 'ldapauthenticator.LDAPAuthenticator'\n"
     "c.LDAPAuthenticator.blocked_users = {'mallory'}\n", "LDAPAuthenticator"),
])
def test_root_stays_blocked_when_a_fragment_sets_blocked_users(prefix, fragment, section):
    write(prefix, "50-block.py", fragment)
    assert load_config(prefix)[section].blocked_users == {"mallory", "root"}


def test_root_may_log_in_only_when_a_fragment_says_so(prefix):
    write(prefix, "50-root.py", "c.Authenticator.admin_users = {'root'}\n")
    assert "blocked_users" not in load_config(prefix).Authenticator


def test_spawn_durations_are_counted_up_to_slurm_queue_waits():
    import subprocess
    import sys

    code = ("import barehub.hub, jupyterhub.metrics as m; b = m.spawn_duration_buckets; "
            "print(600.0 in b, max(x for x in b if x != float('inf')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}).stdout.split()
    assert out == ["True", "172800.0"]  # JupyterHub's own buckets, then hours up to two days


def test_local_servers_are_units_in_one_slice_with_their_environment_file_out_of_users_reach(prefix):
    c = load_config(prefix)
    assert c.JupyterHub.spawner_class == "barehub.local_spawner.LocalSpawner"
    assert c.SystemdSpawner.slice == "jupyterhub-users.slice"
    assert c.SystemdSpawner.unit_name_template == "jupyter-{USERNAME}-singleuser"
    # by numeric id: systemd splits the value at whitespace, and a user name may have a space
    assert c.SystemdSpawner.unit_extra_properties == {"RuntimeDirectory": "jupyterhub/users/{USERID} jupyterhub-apps/{USERID}",
                                                      "TimeoutStopSec": "20s", "CPUAccounting": "yes"}


def test_a_fragment_that_assigns_unit_properties_keeps_the_runtime_directory(prefix):
    write(prefix, "30-units.py", "c.SystemdSpawner.unit_extra_properties = {'TasksMax': '500'}\n")
    assert load_config(prefix).SystemdSpawner.unit_extra_properties == {
        "RuntimeDirectory": "jupyterhub/users/{USERID} jupyterhub-apps/{USERID}", "TasksMax": "500"}
    write(prefix, "30-units.py", "c.SystemdSpawner.unit_extra_properties = {'RuntimeDirectory': 'site/{USERID}'}\n")
    assert load_config(prefix).SystemdSpawner.unit_extra_properties == {"RuntimeDirectory": "site/{USERID}"}

"""Which login names the hub accepts from an authenticator that does not check them against local accounts.

A name from an OAuth/OpenID Connect provider (or any directory) becomes a unix account's name, a systemd
unit's, a URL path and a traefik rule (`/user/NAME/`), and, with kubespawner, part of pod and PVC names.
Names a user chooses at a provider that lets them register can contain anything: backticks, parentheses,
`|`, quotes, commas or spaces (traefik's rule syntax), slashes, a leading "-" (an option to the commands
that take the name), control characters. Such names are refused at login, through JupyterHub's
`Authenticator.username_pattern`, which JupyterHub checks after `normalize_username` (so after it
lowercases the name: GitHub's "Octo-Cat" is checked, and used, as "octo-cat").

Kept in a module of its own, free of tornado and oauthenticator, so that any fragment (kubernetes.py with
whatever authenticator) can import it while the configuration loads.
"""

# A portable unix user name: what useradd has long required (a lowercase letter or "_", then lowercase
# letters, digits, "_" and "-", at most 32 characters: Linux's utmp limit), plus "." for the "j.doe" names
# of many directories. No "$" (Samba's machine accounts are not people), no "-" or "." first (an option, a
# hidden or parent directory), no digit first (an all-digit name is taken for a uid by chown and its kin).
# `\Z`, not `$`: Python's `$` also matches before a final newline, and JupyterHub uses `re.match`.
SAFE_USERNAME_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}\Z"

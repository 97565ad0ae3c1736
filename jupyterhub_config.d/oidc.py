# OpenID Connect logins through the site's identity provider (Keycloak, Azure AD, LemonLDAP::NG,
# Authentik, Casdoor, ...), with groups deciding who may use the hub and who administers it.
# Copy to $PREFIX/jupyterhub_config.d/30-oidc.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs:
# - a confidential client at the provider, redirect URI CALLBACK_URL, post-logout redirect URI the
#   hub's login page (CALLBACK_URL with /oauth_callback replaced by /login), and a groups claim
#   released for SCOPES;
# - the client secret in CLIENT_SECRET_FILE, mode 0600, owned by root (or the hub's user for a
#   --hub-user install):  install -m 600 /dev/stdin /etc/barehub/oidc-client-secret
#   It is read at each login: rotating it needs no reload. Never put it in a fragment;
# - a local account for each username (servers run as that unix user), e.g. from the directory
#   behind the provider (sssd/nslcd), or another spawner.
# The hub reads ISSUER/.well-known/openid-configuration when a login starts, so it starts and
# serves while the provider is down; users then get a page that says so, and the hub's log one line
# naming what to fix (also for an untrusted certificate or a refused client secret).
# Tokens are kept encrypted in the hub's database (auth_state, with the key barehub generated) and
# refreshed when the access token expires.

from barehub.login_names import SAFE_USERNAME_PATTERN

# --- site values -----------------------------------------------------------------------
ISSUER = "https://sso.example.org/realms/example"  # the provider's issuer URL, exactly as it says it
CLIENT_ID = "jupyterhub"
CLIENT_SECRET_FILE = "/etc/barehub/oidc-client-secret"  # 0600, never the secret itself
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
LOGIN_SERVICE = "the university's single sign-on"  # the login button says "Sign in with ..."
SCOPES = ["openid", "profile", "email"]  # add the scope that releases GROUPS_CLAIM if the provider needs one
USERNAME_CLAIM = "preferred_username"  # or "email" with USERNAME_DOMAIN, if users cannot change their mail
#                                       at the provider (a mail it says is unverified is refused)
USERNAME_DOMAIN = ""  # e.g. "example.org": carol@example.org -> carol (case: JupyterHub lowercases names)
GROUPS_CLAIM = "groups"  # the claim (a list) that carries the user's groups
ALLOWED_GROUPS = {"jupyter-users"}  # members of these may log in (admins too)
ADMIN_GROUPS = {"jupyter-admins"}  # members of these are hub admins
# Login names must match USERNAME_PATTERN (after JupyterHub lowercases them). The default refuses, at
# login and with a page that says so, names that could never be a safe unix account, URL or traefik
# route: backticks, parentheses, "|", spaces, quotes, "/", more than 32 characters (barehub.login_names).
# A safe name that must not be used, such as a self-registered "root", is refused by barehub anyway.
USERNAME_PATTERN = SAFE_USERNAME_PATTERN
CA_FILE = ""  # a site CA for the provider's certificate; "" = the system's CAs
LOGOUT_FROM_PROVIDER = True  # the hub's logout also ends the provider's session (shared lab machines)
PASS_TOKENS_TO_SERVER = False  # True: the user's server gets OIDC_ACCESS_TOKEN and OIDC_ID_TOKEN
# -----------------------------------------------------------------------------------------

c.JupyterHub.authenticator_class = "barehub.oidc.OIDCAuthenticator"
c.OIDCAuthenticator.issuer = ISSUER
c.OIDCAuthenticator.client_id = CLIENT_ID
c.OIDCAuthenticator.client_secret_file = CLIENT_SECRET_FILE
c.OIDCAuthenticator.oauth_callback_url = CALLBACK_URL
c.OIDCAuthenticator.login_service = LOGIN_SERVICE
c.OIDCAuthenticator.scope = SCOPES
c.OIDCAuthenticator.username_claim = USERNAME_CLAIM
c.OIDCAuthenticator.username_domain = USERNAME_DOMAIN
c.OIDCAuthenticator.username_pattern = USERNAME_PATTERN
c.OIDCAuthenticator.auth_state_groups_key = f"oauth_user.{GROUPS_CLAIM}"
c.OIDCAuthenticator.allowed_groups = ALLOWED_GROUPS
c.OIDCAuthenticator.admin_groups = ADMIN_GROUPS
c.OIDCAuthenticator.ca_file = CA_FILE
c.OIDCAuthenticator.logout_from_provider = LOGOUT_FROM_PROVIDER
c.OIDCAuthenticator.custom_403_message = (
    "You signed in, but your account is not in a group allowed to use this hub. "
    "Ask the hub's administrators to add you to one of: " + ", ".join(sorted(ALLOWED_GROUPS)))

if PASS_TOKENS_TO_SERVER:
    def _tokens_to_server(spawner, auth_state):
        """At each start (tokens refreshed just before): the server's environment file is private."""
        auth_state = auth_state or {}
        spawner.environment.update({"OIDC_ACCESS_TOKEN": auth_state.get("access_token") or "",
                                    "OIDC_ID_TOKEN": auth_state.get("id_token") or ""})

    c.Spawner.auth_state_hook = _tokens_to_server

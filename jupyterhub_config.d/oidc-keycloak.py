# OpenID Connect logins with Keycloak (oauthenticator's GenericOAuthenticator).
# Copy to $PREFIX/jupyterhub_config.d/30-oidc.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs: a confidential client in the realm whose valid redirect URI is
# CALLBACK_URL, a "groups" claim in the userinfo (a group-membership mapper), and the hub
# reachable by users' browsers at the public URL (HTTPS in production).

# --- site values -----------------------------------------------------------------------
REALM_URL = "https://keycloak.example.org/realms/example"
CLIENT_ID = "jupyterhub"
CLIENT_SECRET_FILE = "/etc/barehub/oidc-client-secret"  # keep secrets out of fragments, 0600
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
ALLOWED_GROUPS = {"jupyter-users"}
ADMIN_GROUPS = {"jupyter-admins"}
# -----------------------------------------------------------------------------------------


def _read_secret(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""  # the hub then refuses logins with a clear error; `barehub check` still runs


c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = CLIENT_ID
c.GenericOAuthenticator.client_secret = _read_secret(CLIENT_SECRET_FILE)
c.GenericOAuthenticator.oauth_callback_url = CALLBACK_URL
c.GenericOAuthenticator.authorize_url = f"{REALM_URL}/protocol/openid-connect/auth"
c.GenericOAuthenticator.token_url = f"{REALM_URL}/protocol/openid-connect/token"
c.GenericOAuthenticator.userdata_url = f"{REALM_URL}/protocol/openid-connect/userinfo"
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = ALLOWED_GROUPS
c.GenericOAuthenticator.admin_groups = ADMIN_GROUPS

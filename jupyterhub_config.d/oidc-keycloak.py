# OpenID Connect logins with Keycloak: oidc.py's authenticator with Keycloak's values.
# Copy to $PREFIX/jupyterhub_config.d/30-oidc.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
# (Every other setting, and what each does, is in oidc.py.)
#
# In Keycloak: a confidential client "jupyterhub" with valid redirect URI CALLBACK_URL and valid
# post-logout redirect URI https://hub.example.org/hub/login; a "Group Membership" mapper (token claim
# name "groups", full group path off, added to userinfo). Secret: install -m 600 /dev/stdin SECRET_FILE

from barehub.login_names import SAFE_USERNAME_PATTERN

# --- site values -----------------------------------------------------------------------
REALM_URL = "https://keycloak.example.org/realms/example"  # Keycloak's issuer: the realm's URL
CLIENT_SECRET_FILE = "/etc/barehub/oidc-client-secret"  # 0600, never the secret itself
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
ALLOWED_GROUPS = {"jupyter-users"}
ADMIN_GROUPS = {"jupyter-admins"}
USERNAME_PATTERN = SAFE_USERNAME_PATTERN  # names that could not be a safe unix account or route: refused (oidc.py)
# -----------------------------------------------------------------------------------------

c.JupyterHub.authenticator_class = "barehub.oidc.OIDCAuthenticator"
c.OIDCAuthenticator.issuer = REALM_URL
c.OIDCAuthenticator.client_id = "jupyterhub"
c.OIDCAuthenticator.client_secret_file = CLIENT_SECRET_FILE
c.OIDCAuthenticator.oauth_callback_url = CALLBACK_URL
c.OIDCAuthenticator.login_service = "Keycloak"
c.OIDCAuthenticator.username_pattern = USERNAME_PATTERN
c.OIDCAuthenticator.allowed_groups = ALLOWED_GROUPS
c.OIDCAuthenticator.admin_groups = ADMIN_GROUPS

# OpenID Connect logins with Microsoft Entra ID (Azure AD): oidc.py's authenticator with Entra's values.
# Copy to $PREFIX/jupyterhub_config.d/30-oidc.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
# (Every other setting, and what each does, is in oidc.py.)
#
# In Entra: an app registration with web redirect URI CALLBACK_URL and front-channel logout URL the
# hub's login page; token configuration: add the "groups" claim (security groups) to the ID token
# (the claims are read from the ID token: Entra's userinfo has neither groups nor preferred_username). Entra sends group OBJECT IDs, not names: ALLOWED_GROUPS and ADMIN_GROUPS hold those ids.
# Secret (a client secret value): install -m 600 /dev/stdin SECRET_FILE

from barehub.login_names import SAFE_USERNAME_PATTERN

# --- site values -----------------------------------------------------------------------
TENANT_ID = "00000000-0000-0000-0000-000000000000"
CLIENT_ID = "11111111-1111-1111-1111-111111111111"  # the app registration's application (client) id
CLIENT_SECRET_FILE = "/etc/barehub/oidc-client-secret"  # 0600, never the secret itself
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
USERNAME_DOMAIN = "example.org"  # carol@example.org -> carol (the local account's name)
ALLOWED_GROUPS = {"22222222-2222-2222-2222-222222222222"}  # group object ids
ADMIN_GROUPS = {"33333333-3333-3333-3333-333333333333"}
USERNAME_PATTERN = SAFE_USERNAME_PATTERN  # names that could not be a safe unix account or route: refused (oidc.py)
# -----------------------------------------------------------------------------------------

c.JupyterHub.authenticator_class = "barehub.oidc.OIDCAuthenticator"
c.OIDCAuthenticator.issuer = f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
c.OIDCAuthenticator.client_id = CLIENT_ID
c.OIDCAuthenticator.client_secret_file = CLIENT_SECRET_FILE
c.OIDCAuthenticator.oauth_callback_url = CALLBACK_URL
c.OIDCAuthenticator.login_service = "Microsoft"
c.OIDCAuthenticator.username_domain = USERNAME_DOMAIN
c.OIDCAuthenticator.username_claim = "preferred_username"  # the UPN; Entra's "email" may be unverified
c.OIDCAuthenticator.username_pattern = USERNAME_PATTERN
c.OIDCAuthenticator.userdata_from_id_token = True  # Entra's userinfo has neither preferred_username nor groups
c.OIDCAuthenticator.allowed_groups = ALLOWED_GROUPS
c.OIDCAuthenticator.admin_groups = ADMIN_GROUPS

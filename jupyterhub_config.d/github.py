# GitHub logins, limited to members of organizations (GitHub's OAuth is not OpenID Connect: fixed
# endpoints; barehub's class adds the secret file and the clear pages of oidc.py).
# Copy to $PREFIX/jupyterhub_config.d/30-github.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs: a GitHub OAuth app whose callback URL is CALLBACK_URL, and, since users'
# servers run as unix accounts with the same names, a way to create them (or another spawner).
# Secret: install -m 600 /dev/stdin SECRET_FILE

from barehub.login_names import SAFE_USERNAME_PATTERN

# --- site values -----------------------------------------------------------------------
CLIENT_ID = "Iv1.0123456789abcdef"
CLIENT_SECRET_FILE = "/etc/barehub/github-client-secret"  # 0600, never the secret itself
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
ORGANIZATIONS = {"example-org"}
ADMINS = {"github-admin-login"}
# Logins must match USERNAME_PATTERN (after JupyterHub lowercases them: Octo-Cat is octo-cat). The default
# refuses, at login and with a page that says so, names that could never be a safe unix account, URL or
# traefik route (barehub.login_names); of GitHub's logins, those that start with a digit or are longer
# than 32 characters (GitHub allows 39). ADMINS must match it too, or the hub does not start.
# A safe name that must not be used, such as "root", is refused by barehub anyway.
USERNAME_PATTERN = SAFE_USERNAME_PATTERN
# -----------------------------------------------------------------------------------------

c.JupyterHub.authenticator_class = "barehub.oidc.GitHubAuthenticator"
c.GitHubAuthenticator.client_id = CLIENT_ID
c.GitHubAuthenticator.client_secret_file = CLIENT_SECRET_FILE
c.GitHubAuthenticator.oauth_callback_url = CALLBACK_URL
c.GitHubAuthenticator.allowed_organizations = ORGANIZATIONS
c.GitHubAuthenticator.scope = ["read:org"]
c.GitHubAuthenticator.username_pattern = USERNAME_PATTERN
c.Authenticator.admin_users = ADMINS

# GitHub logins (oauthenticator's GitHubOAuthenticator), limited to members of organizations.
# Copy to $PREFIX/jupyterhub_config.d/30-github.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs: a GitHub OAuth app whose callback URL is CALLBACK_URL, and, since users'
# servers run as unix accounts with the same names, a way to create them (or another spawner).

# --- site values -----------------------------------------------------------------------
CLIENT_ID = "Iv1.0123456789abcdef"
CLIENT_SECRET_FILE = "/etc/barehub/github-client-secret"  # 0600
CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"
ORGANIZATIONS = {"example-org"}
ADMINS = {"github-admin-login"}
# -----------------------------------------------------------------------------------------


def _read_secret(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


c.JupyterHub.authenticator_class = "github"
c.GitHubOAuthenticator.client_id = CLIENT_ID
c.GitHubOAuthenticator.client_secret = _read_secret(CLIENT_SECRET_FILE)
c.GitHubOAuthenticator.oauth_callback_url = CALLBACK_URL
c.GitHubOAuthenticator.allowed_organizations = ORGANIZATIONS
c.GitHubOAuthenticator.scope = ["read:org"]
c.Authenticator.admin_users = ADMINS

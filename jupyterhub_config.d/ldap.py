# LDAP logins (jupyterhub-ldapauthenticator 2.x).
# Copy to $PREFIX/jupyterhub_config.d/30-ldap.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs: the LDAP server reachable from the hub; for StartTLS/LDAPS its CA file
# here; every user who may log in is also a unix account where their server runs (sssd/nslcd).
# Usernames that do not match valid_username_regex (e.g. "x)(uid=*") are refused before any
# LDAP query; values sent to the server are escaped as well.
import ssl

from ldapauthenticator import LDAPAuthenticator

# --- site values -----------------------------------------------------------------------
SERVER = "ldap.example.org"
PORT = 389  # 389 with StartTLS (tls_strategy "before_bind"), 636 for LDAPS ("on_connect")
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # the CA that signed the LDAP server's cert
USERS = "ou=people,dc=example,dc=org"
ALLOWED_GROUP = "cn=jupyter-users,ou=groups,dc=example,dc=org"
ADMIN_GROUP = "cn=jupyter-admins,ou=groups,dc=example,dc=org"
# -----------------------------------------------------------------------------------------

c.LDAPAuthenticator.server_address = SERVER
c.LDAPAuthenticator.server_port = PORT
c.LDAPAuthenticator.tls_strategy = "before_bind"  # StartTLS; "on_connect" for LDAPS
# ldap3 does not check the server's certificate unless told to
c.LDAPAuthenticator.tls_kwargs = {"ca_certs_file": CA_FILE, "validate": ssl.CERT_REQUIRED}

# Variant 1: the user's DN follows from the username.
c.LDAPAuthenticator.bind_dn_template = [f"uid={{username}},{USERS}"]
# Variant 2: look the DN up (e.g. users spread over several OUs); needs a search account.
# c.LDAPAuthenticator.bind_dn_template = []
# c.LDAPAuthenticator.lookup_dn = True
# c.LDAPAuthenticator.user_search_base = "dc=example,dc=org"
# c.LDAPAuthenticator.user_attribute = "uid"
# c.LDAPAuthenticator.lookup_dn_search_user = "cn=hub-search,dc=example,dc=org"
# c.LDAPAuthenticator.lookup_dn_search_password = open("/etc/barehub/ldap-search-password").read().strip()
# c.LDAPAuthenticator.lookup_dn_user_dn_attribute = "cn"

# Only members of these groups may log in (admins are members too).
c.LDAPAuthenticator.allowed_groups = [ALLOWED_GROUP, ADMIN_GROUP]

# Name and e-mail in auth_state (stored encrypted; barehub provides the crypt key).
c.LDAPAuthenticator.auth_state_attributes = ["cn", "mail"]
c.Authenticator.enable_auth_state = True


class LDAPAuthenticatorWithAdminGroup(LDAPAuthenticator):
    """Members of ADMIN_GROUP are hub admins; membership is re-read at every login."""

    async def authenticate(self, handler, data):
        model = await super().authenticate(handler, data)
        if model:
            model["admin"] = ADMIN_GROUP in model["auth_state"]["ldap_groups"]
        return model


c.JupyterHub.authenticator_class = LDAPAuthenticatorWithAdminGroup

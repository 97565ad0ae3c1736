"""A real OpenID Connect provider inside the test container: LemonLDAP::NG 2.16 (Debian's packages), its
portal served by its FastCGI server behind nginx with HTTPS from a test CA, signing users in against the
test slapd (cluster.setup_ldap) and releasing their LDAP groups as a "groups" claim.

What LemonLDAP::NG needs that its Debian packages do not say (found setting it up here):
- Perl modules it only recommends or does not declare: Unicode::String, IO::Socket::Timeout (LDAP),
  String::Random (the OIDC issuer), IO::String (tests/run installs them);
- a captcha module is loaded at start even with captcha off, and the default one needs Image::Magick:
  "captcha" is set to the inert base plugin;
- the client's ID-token signing algorithm has no default: RS256 is set;
- llng-fastcgi-server refuses to run as root and reads $USER/$GROUP: -u/-g are always given.
"""
from __future__ import annotations

import json
import textwrap
import time

from tests.integration import cluster, pki
from tests.integration.helpers import BASE_URL, Container

HOST, PORT = "idp.barehub.test", 29443
ISSUER = f"https://{HOST}:{PORT}"  # as LemonLDAP::NG says it: no trailing slash
DIR = "/etc/barehub-test/idp"
RUN = "/run/barehub-idp"
CA = f"{DIR}/idp-ca.crt"
CLIENT_ID, CLIENT_SECRET = "jupyterhub", "hub-client-secret-1"
GROUPS_SCOPE = "groups"  # the scope that releases the groups claim
ACCESS_TOKEN_SECONDS = 20  # short, so that the refresh test sees one expire
JUDY_PASSWORD = "judy-Ldap-5"
UNITS = ("test-idp-fastcgi", "test-idp-nginx")
HUB = f"{BASE_URL}/hub"


def setup_idp(box: Container) -> str:
    """Starts the provider (slapd must run); returns the path of its CA certificate in the container."""
    add_judy(box)
    pki.make_ca(box, DIR, "idp")
    cert, key = pki.issue(box, DIR, "idp", "idp", [HOST])
    box.run(f"grep -q ' {HOST}$' /etc/hosts || echo '127.0.0.1 {HOST}' >> /etc/hosts")
    box.run(f"cd {DIR} && openssl genrsa -out oidc-sig.key 2048 2>/dev/null && "
            f"openssl rsa -in oidc-sig.key -pubout -out oidc-sig.pub 2>/dev/null")
    signing_key, public_key = box.run(f"cat {DIR}/oidc-sig.key").stdout, box.run(f"cat {DIR}/oidc-sig.pub").stdout
    box.run(f"mkdir -p {DIR}/conf {DIR}/sessions/lock {DIR}/psessions/lock {DIR}/cache {RUN} {DIR}/nginx-tmp")
    box.run(f"cat > {DIR}/lemonldap-ng.ini", input=ini())
    box.run(f"cat > {DIR}/conf/lmConf-1.json", input=json.dumps(lm_conf(signing_key, public_key), indent=1))
    box.run(f"cat > {DIR}/nginx.conf", input=nginx_conf(cert, key))
    box.run(f"chown -R www-data:www-data {DIR}/conf {DIR}/sessions {DIR}/psessions {DIR}/cache {RUN} && "
            f"chmod 640 {DIR}/conf/lmConf-1.json && chmod 600 {DIR}/oidc-sig.key {key}")
    box.run(f"systemd-run --unit={UNITS[0]} --setenv=LLNG_DEFAULTCONFFILE={DIR}/lemonldap-ng.ini "
            f"/usr/sbin/llng-fastcgi-server --foreground -u www-data -g www-data -s {RUN}/llng-fastcgi.sock "
            f"-p {RUN}/llng-fastcgi.pid -n 2")
    start_web(box)
    return CA


def start_web(box: Container) -> None:
    """nginx, the provider's HTTPS front: stopping it is "the provider cannot be reached"."""
    box.run(f"systemd-run --unit={UNITS[1]} nginx -c {DIR}/nginx.conf -p {DIR}/ -g 'daemon off;'")
    box.run(f"for i in $(seq 150); do curl -sf --cacert {CA} {ISSUER}/.well-known/openid-configuration "
            f"-o /dev/null && exit 0; sleep 0.1; done; exit 1", timeout=60)


def stop_web(box: Container) -> None:
    box.run(f"systemctl stop {UNITS[1]}")


def stop_idp(box: Container) -> None:
    box.run("systemctl stop " + " ".join(UNITS), check=False)


def add_judy(box: Container) -> None:
    """A user whose LDAP uid and mail have capitals (uid Judy, Judy@Barehub.Test), in jupyter-users; her
    local account is "judy", the name the hub makes of her mail (a name no other test module uses: theirs set
    a password when the account does not exist yet)."""
    add_person(box, "Judy", "Judy@Barehub.Test", JUDY_PASSWORD)
    box.run("id judy || useradd --create-home --shell /bin/bash judy")


def add_person(box: Container, uid: str, mail: str, password: str) -> None:
    """A person in the directory behind the provider, in jupyter-users, with the mail she chose (the hub's
    username claim)."""
    hashed = box.run(f"slappasswd -s {password}").stdout.strip()
    ldap = f"-x -H ldap://127.0.0.1:{cluster.LDAP_PORT} -D '{cluster.ROOT_DN}' -w {cluster.ROOT_PW}"
    box.run(f"ldapadd {ldap}", input=textwrap.dedent(f"""\
        dn: uid={uid},ou=people,{cluster.BASE}
        objectClass: inetOrgPerson
        uid: {uid}
        cn: {uid} Tester
        sn: Tester
        mail: {mail}
        userPassword: {hashed}
        """))
    box.run(f"ldapmodify {ldap}", input=f"dn: cn=jupyter-users,ou=groups,{cluster.BASE}\nchangetype: modify\n"
                                        f"add: member\nmember: uid={uid},ou=people,{cluster.BASE}\n")


def ini() -> str:
    return textwrap.dedent(f"""\
        [all]
        logger = Lemonldap::NG::Common::Logger::Std
        userLogger = Lemonldap::NG::Common::Logger::Std
        logLevel = notice
        checkTime = 1
        [configuration]
        type = File
        dirName = {DIR}/conf
        localStorage = Cache::FileCache
        localStorageOptions = {{ 'namespace' => 'lemonldap-ng-config', 'default_expires_in' => 600, \\
            'directory_umask' => '007', 'cache_root' => '{DIR}/cache', 'cache_depth' => 3, }}
        [portal]
        staticPrefix = /static
        templateDir = /usr/share/lemonldap-ng/portal/templates
        languages = en
        [handler]
        status = 0
        useRedirectOnError = 1
        """)


def lm_conf(signing_key: str, public_key: str) -> dict:
    """LemonLDAP::NG's configuration: LDAP logins, the OIDC issuer, the hub as a confidential client."""
    return {
        "cfgNum": 1, "cfgVersion": "2.16.1", "cfgAuthor": "barehub tests", "cfgDate": str(int(time.time())),
        "portal": f"{ISSUER}/", "domain": "barehub.test", "cookieName": "lemonldap", "securedCookie": 1,
        "https": 1, "timeout": 72000, "whatToTrace": "uid",
        "exportedVars": {}, "macros": {}, "groups": {}, "locationRules": {}, "exportedHeaders": {},
        "loginHistoryEnabled": 0, "notification": 0, "portalDisplayAppslist": 0,
        "captcha": "::Main::Plugin",  # see the module's docstring
        "globalStorage": "Apache::Session::File",
        "globalStorageOptions": {"Directory": f"{DIR}/sessions", "LockDirectory": f"{DIR}/sessions/lock",
                                 "generateModule": "Lemonldap::NG::Common::Apache::Session::Generate::SHA256"},
        "persistentStorage": "Apache::Session::File",
        "persistentStorageOptions": {"Directory": f"{DIR}/psessions", "LockDirectory": f"{DIR}/psessions/lock"},
        "localSessionStorage": "Cache::FileCache",
        "localSessionStorageOptions": {"cache_depth": 3, "cache_root": f"{DIR}/cache", "default_expires_in": 600,
                                       "directory_umask": "007", "namespace": "lemonldap-ng-sessions"},
        # users and groups from the test slapd
        "authentication": "LDAP", "userDB": "Same", "passwordDB": "Null",
        "ldapServer": f"ldap://127.0.0.1:{cluster.LDAP_PORT}", "ldapBase": f"ou=people,{cluster.BASE}",
        "managerDn": "", "managerPassword": "",
        "AuthLDAPFilter": "(&(uid=$user)(objectClass=inetOrgPerson))",
        "LDAPFilter": "(&(uid=$user)(objectClass=inetOrgPerson))",
        "ldapExportedVars": {"uid": "uid", "cn": "cn", "mail": "mail", "sn": "sn"},
        "ldapGroupBase": f"ou=groups,{cluster.BASE}", "ldapGroupObjectClass": "groupOfNames",
        "ldapGroupAttributeName": "member", "ldapGroupAttributeNameUser": "dn",
        "ldapGroupAttributeNameSearch": "cn", "ldapUsePasswordResetAttribute": 0,
        # the OpenID Connect provider
        "issuerDBOpenIDConnectActivation": 1, "issuerDBOpenIDConnectPath": "^/oauth2/",
        "oidcServiceMetaDataIssuer": ISSUER,
        "oidcServicePrivateKeySig": signing_key, "oidcServicePublicKeySig": public_key,
        "oidcServiceKeyIdSig": "barehub-test-1",
        "oidcServiceAllowAuthorizationCodeFlow": 1, "oidcServiceAllowImplicitFlow": 0,
        "oidcServiceAllowHybridFlow": 0, "oidcServiceIgnoreScopeForClaims": 0,
        "oidcRPMetaDataOptions": {CLIENT_ID: {
            "oidcRPMetaDataOptionsClientID": CLIENT_ID, "oidcRPMetaDataOptionsClientSecret": CLIENT_SECRET,
            "oidcRPMetaDataOptionsPublic": 0, "oidcRPMetaDataOptionsDisplayName": "JupyterHub",
            "oidcRPMetaDataOptionsRedirectUris": f"{HUB}/oauth_callback",
            "oidcRPMetaDataOptionsPostLogoutRedirectUris": f"{HUB}/login",
            "oidcRPMetaDataOptionsBypassConsent": 1, "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
            "oidcRPMetaDataOptionsAccessTokenExpiration": ACCESS_TOKEN_SECONDS,
            "oidcRPMetaDataOptionsRefreshToken": 1,
        }},
        "oidcRPMetaDataExportedVars": {CLIENT_ID: {
            "preferred_username": "uid", "name": "cn", "family_name": "sn", "email": "mail",
            "groups": "groups;string;always",  # "always": a JSON list, also of one group
        }},
        "oidcRPMetaDataOptionsExtraClaims": {CLIENT_ID: {GROUPS_SCOPE: "groups"}},
        "oidcRPMetaDataMacros": {CLIENT_ID: {}}, "oidcRPMetaDataScopeRules": {CLIENT_ID: {}},
    }


def nginx_conf(cert: str, key: str) -> str:
    """Debian's portal-nginx.conf, reduced to the portal, with HTTPS on loopback."""
    return textwrap.dedent(f"""\
        user www-data;
        worker_processes 1;
        pid {RUN}/nginx.pid;
        error_log stderr warn;
        events {{ worker_connections 256; }}
        http {{
          include /etc/nginx/mime.types;
          access_log off;
          client_body_temp_path {DIR}/nginx-tmp/body;
          fastcgi_temp_path {DIR}/nginx-tmp/fastcgi;
          proxy_temp_path {DIR}/nginx-tmp/proxy;
          uwsgi_temp_path {DIR}/nginx-tmp/uwsgi;
          scgi_temp_path {DIR}/nginx-tmp/scgi;
          upstream llng_portal {{ server unix:{RUN}/llng-fastcgi.sock; }}
          server {{
            listen 127.0.0.1:{PORT} ssl;
            server_name {HOST};
            ssl_certificate {cert};
            ssl_certificate_key {key};
            root /usr/share/lemonldap-ng/portal/htdocs/;
            if ($uri !~ ^/((static|javascript|favicon).*|.*\\.psgi)) {{
              rewrite ^/(.*)$ /index.psgi/$1 break;
            }}
            location ~ ^(?<sc>/.*\\.psgi)(?:$|/) {{
              include /etc/nginx/fastcgi_params;
              fastcgi_pass llng_portal;
              fastcgi_param HTTP_HOST $http_host;
              fastcgi_param LLTYPE psgi;
              fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
              fastcgi_split_path_info ^(.*\\.psgi)(/.*)$;
              fastcgi_param PATH_INFO $fastcgi_path_info;
            }}
            location /static/ {{ alias /usr/share/lemonldap-ng/portal/htdocs/static/; }}
            location /javascript/ {{ alias /usr/share/javascript/; }}
          }}
        }}
        """)

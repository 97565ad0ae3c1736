# Who may log in and who is an admin, for the default PAM logins (the machine's accounts).
# Copy to $PREFIX/jupyterhub_config.d/20-access.py, edit, then: systemctl reload jupyterhub
# Setting any of these replaces barehub's default "every local user except root".

c.Authenticator.allowed_users = {"alice", "bob"}
c.PAMAuthenticator.allowed_groups = {"jupyter-users"}  # unix groups; members may log in too
c.Authenticator.admin_users = {"alice"}  # admins may log in, and manage users and servers
c.PAMAuthenticator.admin_groups = {"jupyter-admins"}  # unix groups whose members are admins

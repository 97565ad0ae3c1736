"""Which of a user's servers a request's token belongs to: a server's own token (JupyterHub gives each server one,
with the "server" role: it may report activity and nothing else) lets that server, and only it, tell the hub its
port (barehub.slurm_spawner) and read its own session (barehub.sessions: the job's end, for JupyterLab's warning).
"""
from __future__ import annotations

from jupyterhub import orm


def spawner_of_token(handler):
    """The spawner whose own token authenticated `handler`'s request, or None. Found by the spawner's token, or,
    after a hub restart (the spawner no longer holds it), by the note JupyterHub gives that token."""
    token = handler.get_auth_token()
    user = handler.current_user
    if not token or user is None or not hasattr(user, "spawners"):
        return None
    orm_token = orm.APIToken.find(handler.db, token)
    for spawner in user.spawners.values():
        if spawner.api_token and spawner.api_token == token:
            return spawner
        if orm_token is not None and spawner.server is not None \
                and orm_token.note == f"Server at {spawner.server.base_url}":
            return spawner
    return None

# jupyterhub-idle-culler's config file, as barehub runs the culler (barehub.hub_config.idle_culler_service):
# the decision for each server is barehub.culling's, with the site's limits that the hub put in the culler's
# environment (c.Barehub.idle_timeout, max_busy, max_age, profile_limits, keep_max).
import json
import os

from barehub.culling import POLICY_ENV, Arbiter, Limits, Policy

_policy = os.environ.get(POLICY_ENV)
c.IdleCuller.cull_arbiter_hook = Arbiter(  # noqa: F821 (c: the culler's config)
    Policy.from_json(json.loads(_policy)) if _policy else Policy(Limits(0)))  # Limits(0): its --timeout then

"""What a credential may call: the scopes that API keys and JWTs grant.

The gateway checks them (facefuse.gateway.auth); each service names the scope its RPCs need.
"""

SCOPE_FUSE = "fuse"
SCOPE_TEMPLATES = "templates:read"
SCOPES = (SCOPE_FUSE, SCOPE_TEMPLATES)

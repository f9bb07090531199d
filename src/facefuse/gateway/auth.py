"""Who is calling: API keys (stored as sha256 hashes) or JWTs (HS256 / RS256).

Keys file (JSON):
    {"keys": [{"id": "campaign-web", "sha256": "<hex of the key>", "tenant": "acme",
               "scopes": ["fuse", "templates:read"], "rate_per_s": 20, "burst": 40,
               "max_concurrency": 8}]}
`facefuse gateway add-key` writes entries; the key itself is shown once and never stored.
JWT claims: `tenant` (else `sub`), `scope` (space-separated) or `scopes` (list); issuer,
audience and expiry are checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import jwt

from facefuse.gateway.errors import PermissionDenied, Unauthenticated
from facefuse.gateway.settings import GatewaySettings
from facefuse.scopes import SCOPE_FUSE, SCOPE_TEMPLATES, SCOPES  # noqa: F401 - the gateway's names for them

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
# Key ids and tenants appear in logs and messages: short, no spaces or control characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def check_key_entry(key_id: str, tenant: str, scopes: list[str], rate_per_s: float, burst: int,
                    max_concurrency: int) -> None:
    """Raise ValueError naming what is wrong with a new key's fields."""
    for what, value in (("key id", key_id), ("tenant", tenant)):
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{what} {value[:32]!r} is invalid; use 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '@', '-'")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes {unknown or 'list'} {'unknown' if unknown else 'is empty'}; use {', '.join(SCOPES)}")
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s {rate_per_s} must be a positive number")
    if burst < 1:
        raise ValueError(f"burst {burst} must be at least 1")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency {max_concurrency} must be at least 1")


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    rate_per_s: float
    burst: int
    max_concurrency: int
    credential: str  # key id or "jwt:<sub>", for logs; never the secret

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"credential {self.credential!r} lacks scope {scope!r}")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ffk_" + secrets.token_urlsafe(24)


def add_key(keys_file: Path, key_id: str, tenant: str, scopes: list[str], rate_per_s: float, burst: int,
            max_concurrency: int) -> str:
    """Append a new key to the keys file; returns the key (shown once, stored hashed).
    Raises ValueError for an unknown scope, a bad name or limits that are not positive."""
    check_key_entry(key_id, tenant, scopes, rate_per_s, burst, max_concurrency)
    key = new_key()
    data = json.loads(keys_file.read_text()) if keys_file.is_file() else {"keys": []}
    data["keys"] = [k for k in data["keys"] if k["id"] != key_id] + [{
        "id": key_id, "sha256": hash_key(key), "tenant": tenant, "scopes": scopes,
        "rate_per_s": rate_per_s, "burst": burst, "max_concurrency": max_concurrency,
    }]
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(json.dumps(data, indent=2) + "\n")
    keys_file.chmod(0o600)
    return key


class Authenticator:
    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self._keys: dict[str, Principal] = {}
        if settings.keys_file and settings.keys_file.is_file():
            for entry in json.loads(settings.keys_file.read_text())["keys"]:
                self._keys[entry["sha256"]] = Principal(
                    tenant=entry["tenant"], scopes=frozenset(entry["scopes"]), rate_per_s=float(entry["rate_per_s"]),
                    burst=int(entry["burst"]), max_concurrency=int(entry["max_concurrency"]), credential=entry["id"],
                )
        self._jwt_keys: list[tuple[str, str | bytes]] = []
        if settings.jwt_hs256_secret:
            self._jwt_keys.append(("HS256", settings.jwt_hs256_secret.get_secret_value()))
        if settings.jwt_rs256_public_key_file:
            self._jwt_keys.append(("RS256", settings.jwt_rs256_public_key_file.read_bytes()))

    def authenticate(self, metadata: Mapping[str, str] | Iterable[tuple[str, str]]) -> Principal:
        """The caller of a call's metadata: exactly one credential, an API key or a bearer JWT.

        Pairs, not a dict: a dict keeps the last of two `x-api-key` headers, and which of
        two credentials wins must never depend on their order (a proxy's key added after
        the caller's would silently act for it)."""
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
        found = [(key, value) for key, value in pairs if key in (API_KEY_HEADER, AUTHORIZATION_HEADER)]
        if not found:
            raise Unauthenticated(f"no credentials: send an API key in '{API_KEY_HEADER}' or "
                                  f"'{AUTHORIZATION_HEADER}: Bearer <JWT>'")
        if len(found) > 1:
            names = ", ".join(key for key, _ in found)
            raise Unauthenticated(f"the call carries {len(found)} credentials ({names}); send exactly one: an API key "
                                  f"in '{API_KEY_HEADER}' or '{AUTHORIZATION_HEADER}: Bearer <JWT>'")
        (key, value), = found
        if key == API_KEY_HEADER:
            return self._from_key(value)
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and not token.strip():
            raise Unauthenticated(f"the '{AUTHORIZATION_HEADER}' header holds no token after 'Bearer'")
        if scheme.lower() != "bearer":
            raise Unauthenticated(f"the '{AUTHORIZATION_HEADER}' header's scheme {scheme[:16]!r} is not accepted; "
                                  f"send 'Bearer <JWT>', or an API key in '{API_KEY_HEADER}' instead")
        return self._from_jwt(token.strip())

    def _from_key(self, key: str) -> Principal:
        digest = hash_key(key)
        for stored, principal in self._keys.items():
            if hmac.compare_digest(stored, digest):
                return principal
        raise Unauthenticated("the API key is not valid")

    def _from_jwt(self, token: str) -> Principal:
        if not self._jwt_keys:
            raise Unauthenticated("bearer tokens are not accepted by this gateway")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        keys = [k for alg, k in self._jwt_keys if alg == header.get("alg")]
        if not keys:
            raise Unauthenticated(f"JWT algorithm {header.get('alg')!r} is not accepted")
        options = {"require": ["exp"]}
        try:
            claims = jwt.decode(
                token, keys[0], algorithms=[header["alg"]], issuer=self.settings.jwt_issuer,
                audience=self.settings.jwt_audience, options=options,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the JWT has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the JWT is not valid ({type(exc).__name__})") from None
        scopes = claims.get("scopes")
        if scopes is None:
            scopes = claims.get("scope", "")
            if not isinstance(scopes, str):
                raise Unauthenticated("the JWT's 'scope' claim must be a space-separated string")
            scopes = scopes.split()
        elif not (isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)):
            raise Unauthenticated("the JWT's 'scopes' claim must be a list of strings")
        tenant, subject = claims.get("tenant") or claims.get("sub"), claims.get("sub", "-")
        for what, value in (("tenant", tenant), ("sub", subject)):
            if not (isinstance(value, str) and NAME_PATTERN.match(value)):
                raise Unauthenticated(f"the JWT's '{what}' claim must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '@', '-'")
        s = self.settings
        return Principal(
            tenant=tenant, scopes=frozenset(scopes),
            rate_per_s=s.jwt_rate_per_s, burst=s.jwt_burst, max_concurrency=s.jwt_max_concurrency,
            credential=f"jwt:{subject}",
        )

"""Fixtures: the real gateway in-process on a free port, in front of real tritonservers.

- `gateway` serves the session's Triton with every kind of credential configured:
  API keys from a keys file (stored hashed), HS256 and RS256 JWTs.
- `spare_triton` is a second replica started per test, for tests that stop (SIGSTOP)
  or kill a replica; the session's Triton is never stopped.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from facefuse_client import FacefuseClient
from gateway_helpers import Credentials, resume, running_gateway, target

from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, add_key
from facefuse.server.triton import embedded_triton


def _rsa_private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="session")
def credentials(tmp_path_factory) -> Credentials:
    root = tmp_path_factory.mktemp("gateway-auth")
    keys_file = root / "keys.json"
    full = add_key(keys_file, "full", "tenant-full", [SCOPE_FUSE, SCOPE_TEMPLATES], 1000.0, 1000, 64)
    list_only = add_key(keys_file, "list-only", "tenant-list", [SCOPE_TEMPLATES], 1000.0, 1000, 64)
    # Two calls, then one per 100 s.
    rate_limited = add_key(keys_file, "rate-limited", "tenant-slow", [SCOPE_FUSE, SCOPE_TEMPLATES], 0.01, 2, 64)
    # One call in flight at a time.
    one_at_a_time = add_key(keys_file, "one-at-a-time", "tenant-single", [SCOPE_FUSE, SCOPE_TEMPLATES], 1000.0, 1000, 1)
    private = _rsa_private_pem()
    public = serialization.load_pem_private_key(private, None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_file = root / "jwt-rs256.pub.pem"
    public_file.write_bytes(public)
    return Credentials(keys_file, full, list_only, rate_limited, one_at_a_time, private, public_file, _rsa_private_pem())


@pytest.fixture(scope="session")
def gateway(credentials, triton):
    with running_gateway(credentials, [triton.grpc_url]) as running:
        yield running


@pytest.fixture(scope="session")
def client(gateway, credentials):
    with FacefuseClient(target(gateway), api_key=credentials.full_key) as sdk:
        yield sdk


@pytest.fixture
def spare_triton(settings, triton):
    """A second replica of the same repository on its own ports, stopped after the test."""
    with embedded_triton(settings) as server:
        try:
            yield server
        finally:
            resume(server)  # a test that failed while the replica was paused must not hang teardown

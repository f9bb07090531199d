"""A local API key for the embedded default, so `make run` works with auth switched on.

Written once to <var>/gateway/dev-api-key (mode 0600) next to the keys file that holds
its hash. Production deployments manage keys with `facefuse gateway add-key` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, add_key
from facefuse.gateway.settings import GatewaySettings

DEV_KEY_ID = "local-dev"


def dev_key_path(settings: GatewaySettings) -> Path:
    return settings.keys_file.parent / "dev-api-key"


def ensure_dev_key(settings: GatewaySettings) -> str:
    path = dev_key_path(settings)
    if path.is_file() and settings.keys_file.is_file():
        return path.read_text().strip()
    key = add_key(settings.keys_file, DEV_KEY_ID, "local", [SCOPE_FUSE, SCOPE_TEMPLATES],
                  rate_per_s=1000.0, burst=2000, max_concurrency=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def read_dev_key(settings: GatewaySettings) -> str | None:
    """The local key `serve` wrote, or None when there is none."""
    path = dev_key_path(settings)
    return path.read_text().strip() if path.is_file() else None

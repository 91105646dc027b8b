"""Credentials the gateway makes for itself on first start, each shown exactly once.

Without a configured ``master_key`` a random one is generated, only its SHA-256 is stored,
and the secret is logged once; later starts read the stored hash. With
``bootstrap_api_key`` and an empty key table, one virtual key is minted and logged once.
"""

from __future__ import annotations

import secrets

import structlog

from otari_gateway.control.keys import KeyService, NewKey, hash_key
from otari_gateway.store import access
from otari_gateway.store.database import Database
from otari_gateway.store.settings import get_setting, set_once

log = structlog.get_logger("otari")

MASTER_KEY_SETTING = "master_key_sha256"


async def master_key_digest(db: Database, configured: str | None) -> str:
    """The SHA-256 (hex) the master key is checked against."""
    if configured:
        return hash_key(configured)
    stored = await get_setting(db, MASTER_KEY_SETTING)
    if stored is not None:
        return stored
    secret = "sk-otari-master-" + secrets.token_urlsafe(32)
    if await set_once(db, MASTER_KEY_SETTING, hash_key(secret)):
        log.warning(
            "master_key.generated",
            master_key=secret,
            hint="shown once; only its hash is stored. Set master_key in the config to choose one",
        )
    stored = await get_setting(db, MASTER_KEY_SETTING)
    assert stored is not None
    return stored


async def bootstrap_api_key(db: Database, keys: KeyService) -> None:
    """Mint one key when there are none, and log it once."""
    if await access.count_keys(db) > 0:
        return
    created = await keys.create(NewKey(key_name="bootstrap"))
    log.warning(
        "api_key.bootstrapped",
        api_key=created.key,
        key_id=created.id,
        user_id=created.user_id,
        hint="shown once; export it as OTARI_API_KEY",
    )

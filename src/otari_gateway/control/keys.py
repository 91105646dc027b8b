"""Virtual keys: minting, listing, editing, rotating and deleting them.

A key's secret is ``sk-otari-`` plus 32 random bytes (URL-safe base64). Only its SHA-256
hex digest is stored (``key_hash``), with the first 12 characters kept for display; the
secret itself is returned once, by create and by rotate. Every committed write tells the
``ChangeListener`` so cached keys on the request path are dropped at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from otari_gateway.billing.periods import next_reset
from otari_gateway.control.changes import ChangeListener
from otari_gateway.control.outage import available
from otari_gateway.control.values import (
    UNSET,
    Page,
    Unset,
    check_allowed_models,
    future_expiry,
    new_id,
)
from otari_gateway.errors import NotFound
from otari_gateway.store import keys_repo, users_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey
from otari_gateway.store.types import to_money, utcnow

SECRET_PREFIX = "sk-otari-"
DISPLAY_PREFIX_LENGTH = 12
DEFAULT_USER = "default"


def hash_key(secret: str) -> str:
    """The stored form of a key: SHA-256 hex of the whole secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mint_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyView:
    id: str
    key_prefix: str
    key_name: str | None
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    is_active: bool
    allowed_models: list[str] | None
    metadata: dict[str, Any]
    max_budget: Decimal | None
    budget_duration_sec: int | None
    spend: Decimal
    rpm_limit: int | None
    tpm_limit: int | None


@dataclass(frozen=True, slots=True)
class CreatedKey(KeyView):
    """A key as minted or rotated: the only time ``key`` (the secret) is ever shown."""

    key: str


@dataclass(frozen=True, slots=True)
class NewKey:
    key_name: str | None = None
    user_id: str | None = None
    expires_at: datetime | None = None
    is_active: bool = True
    allowed_models: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    max_budget: Decimal | None = None
    budget_duration_sec: int | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None


@dataclass(frozen=True, slots=True)
class KeyPatch:
    """Fields left ``UNSET`` are untouched; ``None`` clears a nullable field."""

    key_name: str | Unset | None = UNSET
    is_active: bool | Unset | None = UNSET
    expires_at: datetime | Unset | None = UNSET
    allowed_models: list[str] | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET
    max_budget: Decimal | Unset | None = UNSET
    budget_duration_sec: int | Unset | None = UNSET
    rpm_limit: int | Unset | None = UNSET
    tpm_limit: int | Unset | None = UNSET


def _view(key: ApiKey) -> KeyView:
    return KeyView(
        id=key.id,
        key_prefix=key.key_prefix,
        key_name=key.key_name,
        user_id=key.user_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        is_active=key.is_active,
        allowed_models=None if key.allowed_models is None else list(key.allowed_models),
        metadata=dict(key.metadata_ or {}),
        max_budget=key.max_budget,
        budget_duration_sec=key.budget_duration_sec,
        spend=key.spend,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
    )


def _created(key: ApiKey, secret: str) -> CreatedKey:
    view = _view(key)
    return CreatedKey(**{f.name: getattr(view, f.name) for f in fields(KeyView)}, key=secret)


def _set_secret(key: ApiKey, secret: str) -> None:
    key.key_hash = hash_key(secret)
    key.key_prefix = secret[:DISPLAY_PREFIX_LENGTH]


def _restart_key_period(key: ApiKey, now: datetime) -> None:
    """A per-key budget's period starts when its cap or duration is (re)set."""
    key.budget_started_at = now
    key.next_budget_reset_at = next_reset(now, duration_sec=key.budget_duration_sec, alignment=None)


def _not_found(key_id: str) -> NotFound:
    return NotFound(f"API key with id '{key_id}' not found", param="key_id")


class KeyService:
    def __init__(self, db: Database, changes: ChangeListener) -> None:
        self._db = db
        self._changes = changes

    async def create(self, spec: NewKey) -> CreatedKey:
        now = utcnow()
        expires_at = future_expiry(spec.expires_at, now)
        allowed = check_allowed_models(spec.allowed_models)
        secret = mint_secret()
        async with available(self._db.session()) as session:
            user, user_created = await users_repo.ensure_user(
                session, spec.user_id or DEFAULT_USER, now=now
            )
            if user.deleted_at is not None:
                raise NotFound(
                    f"User '{user.user_id}' has been deleted; re-create it with POST /v1/users",
                    param="user_id",
                )
            key = ApiKey(
                id=new_id(),
                key_name=spec.key_name,
                user_id=user.user_id,
                created_at=now,
                expires_at=expires_at,
                is_active=spec.is_active,
                allowed_models=allowed,
                metadata_=dict(spec.metadata),
                max_budget=None if spec.max_budget is None else to_money(spec.max_budget),
                budget_duration_sec=spec.budget_duration_sec,
                rpm_limit=spec.rpm_limit,
                tpm_limit=spec.tpm_limit,
            )
            _set_secret(key, secret)
            if key.max_budget is not None or key.budget_duration_sec is not None:
                _restart_key_period(key, now)
            keys_repo.add_key(session, key)
            await session.flush()
            created = _created(key, secret)
        if user_created:
            self._changes.users_changed()
        self._changes.keys_changed()
        return created

    async def list_keys(self, page: Page) -> list[KeyView]:
        async with available(self._db.session()) as session:
            keys = await keys_repo.list_keys(session, skip=page.skip, limit=page.limit)
            return [_view(key) for key in keys]

    async def get(self, key_id: str) -> KeyView:
        async with available(self._db.session()) as session:
            key = await keys_repo.get_key(session, key_id)
            if key is None:
                raise _not_found(key_id)
            return _view(key)

    async def update(self, key_id: str, patch: KeyPatch) -> KeyView:
        now = utcnow()
        async with available(self._db.session()) as session:
            key = await keys_repo.get_key(session, key_id)
            if key is None:
                raise _not_found(key_id)
            _apply(key, patch, now)
            await session.flush()
            view = _view(key)
        self._changes.keys_changed()
        return view

    async def rotate(self, key_id: str) -> CreatedKey:
        secret = mint_secret()
        async with available(self._db.session()) as session:
            key = await keys_repo.get_key(session, key_id)
            if key is None:
                raise _not_found(key_id)
            # The old hash is overwritten in the same row: the old secret stops matching
            # the moment this commits, with no grace window.
            _set_secret(key, secret)
            key.last_used_at = None
            await session.flush()
            created = _created(key, secret)
        self._changes.keys_changed()
        return created

    async def delete(self, key_id: str) -> None:
        async with available(self._db.session()) as session:
            if await keys_repo.get_key(session, key_id) is None:
                raise _not_found(key_id)
            await keys_repo.delete_key(session, key_id)
        self._changes.keys_changed()


def _apply(key: ApiKey, patch: KeyPatch, now: datetime) -> None:
    if not isinstance(patch.key_name, Unset):
        key.key_name = patch.key_name
    # Not nullable: a null is read as "leave it".
    if isinstance(patch.is_active, bool):
        key.is_active = patch.is_active
    if not isinstance(patch.expires_at, Unset):
        key.expires_at = future_expiry(patch.expires_at, now)
    if not isinstance(patch.allowed_models, Unset):
        key.allowed_models = check_allowed_models(patch.allowed_models)
    if isinstance(patch.metadata, dict):
        key.metadata_ = dict(patch.metadata)
    if not isinstance(patch.rpm_limit, Unset):
        key.rpm_limit = patch.rpm_limit
    if not isinstance(patch.tpm_limit, Unset):
        key.tpm_limit = patch.tpm_limit
    _apply_budget(key, patch, now)


def _apply_budget(key: ApiKey, patch: KeyPatch, now: datetime) -> None:
    restart = False
    if not isinstance(patch.max_budget, Unset):
        key.max_budget = None if patch.max_budget is None else to_money(patch.max_budget)
        restart = key.budget_started_at is None
    if (
        not isinstance(patch.budget_duration_sec, Unset)
        and patch.budget_duration_sec != key.budget_duration_sec
    ):
        key.budget_duration_sec = patch.budget_duration_sec
        restart = True
    if restart:
        _restart_key_period(key, now)

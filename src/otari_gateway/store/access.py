"""Hot-path reads: a virtual key by its hash, a user with its budget; and ensuring a user.

These feed the request path's in-process caches, so each runs about once per key or
user per cache lifetime, not once per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from otari_gateway.store import users_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, Budget, User


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    user_id: str
    is_active: bool
    expires_at: datetime | None
    allowed_models: tuple[str, ...] | None
    max_budget: Decimal | None
    budget_duration_sec: int | None
    next_budget_reset_at: datetime | None
    rpm_limit: int | None
    tpm_limit: int | None


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    blocked: bool
    deleted: bool
    allowed_models: tuple[str, ...] | None
    max_budget: Decimal | None
    budget_duration_sec: int | None
    reset_alignment: str | None
    next_budget_reset_at: datetime | None


def _models(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


async def key_by_hash(db: Database, key_hash: str) -> KeyRecord | None:
    async with db.session() as session:
        row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar()
        if row is None:
            return None
        return KeyRecord(
            id=row.id,
            user_id=row.user_id,
            is_active=row.is_active,
            expires_at=row.expires_at,
            allowed_models=_models(row.allowed_models),
            max_budget=row.max_budget,
            budget_duration_sec=row.budget_duration_sec,
            next_budget_reset_at=row.next_budget_reset_at,
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
        )


async def user_by_id(db: Database, user_id: str) -> UserRecord | None:
    query = (
        select(User, Budget)
        .outerjoin(Budget, Budget.budget_id == User.budget_id)
        .where(User.user_id == user_id)
    )
    async with db.session() as session:
        found = (await session.execute(query)).first()
        if found is None:
            return None
        user, budget = found
        return UserRecord(
            user_id=user.user_id,
            blocked=user.blocked,
            deleted=user.deleted_at is not None,
            allowed_models=_models(user.allowed_models),
            max_budget=budget.max_budget if budget else None,
            budget_duration_sec=budget.budget_duration_sec if budget else None,
            reset_alignment=budget.reset_alignment if budget else None,
            next_budget_reset_at=user.next_budget_reset_at,
        )


async def ensure_user(db: Database, user_id: str) -> None:
    """Create the user if it does not exist (concurrent callers may race: both succeed)."""
    async with db.session() as session:
        await users_repo.ensure_user(session, user_id)


async def count_keys(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(select(func.count()).select_from(ApiKey))).scalar_one())

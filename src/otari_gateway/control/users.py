"""Users: the principals keys belong to, their budget assignment, blocking and soft delete.

Deleting a user is soft (``deleted_at``) so its usage keeps its owner; its keys go
inactive in the same transaction. Re-creating a deleted user id revives the row with
zero spend, and its old keys stay inactive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from otari_gateway.billing.periods import next_reset
from otari_gateway.control.changes import ChangeListener
from otari_gateway.control.outage import available
from otari_gateway.control.usage import UsageFilter, UsageRowView, row_view
from otari_gateway.control.values import UNSET, Page, Unset, check_allowed_models
from otari_gateway.errors import Conflict, NotFound
from otari_gateway.store import budgets_repo, leases, usage_repo, users_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import Budget, User
from otari_gateway.store.types import utcnow

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class UserView:
    user_id: str
    alias: str | None
    spend: Decimal
    reserved: Decimal
    budget_id: str | None
    allowed_models: list[str] | None
    budget_started_at: datetime | None
    next_budget_reset_at: datetime | None
    blocked: bool
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewUser:
    user_id: str
    alias: str | None = None
    budget_id: str | None = None
    blocked: bool = False
    allowed_models: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserPatch:
    """Fields left ``UNSET`` are untouched; ``budget_id=None`` detaches the budget."""

    alias: str | Unset | None = UNSET
    budget_id: str | Unset | None = UNSET
    blocked: bool | Unset | None = UNSET
    allowed_models: list[str] | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET


def _views(users: Sequence[User], held: Mapping[str, Decimal]) -> list[UserView]:
    """The users as the API shows them: ``reserved`` is what their in-flight requests hold,
    as the budget leases report it (``store.leases.held_by_users``; the headroom leased
    beyond that is not shown)."""
    return [_view(user, held.get(user.user_id, ZERO)) for user in users]


def _view(user: User, held: Decimal) -> UserView:
    return UserView(
        user_id=user.user_id,
        alias=user.alias,
        spend=user.spend,
        reserved=held,
        budget_id=user.budget_id,
        allowed_models=None if user.allowed_models is None else list(user.allowed_models),
        budget_started_at=user.budget_started_at,
        next_budget_reset_at=user.next_budget_reset_at,
        blocked=user.blocked,
        created_at=user.created_at,
        updated_at=user.updated_at,
        metadata=dict(user.metadata_ or {}),
    )


def user_not_found(user_id: str) -> NotFound:
    return NotFound(f"User with id '{user_id}' not found", param="user_id")


def budget_not_found(budget_id: str) -> NotFound:
    return NotFound(f"Budget with id '{budget_id}' not found", param="budget_id")


def _assign_budget(user: User, budget: Budget | None, now: datetime) -> None:
    """Attach (or detach, with None) a budget; its period starts now."""
    if budget is None:
        user.budget_id = None
        user.budget_started_at = None
        user.next_budget_reset_at = None
        return
    user.budget_id = budget.budget_id
    user.budget_started_at = now
    user.next_budget_reset_at = next_reset(
        now, duration_sec=budget.budget_duration_sec, alignment=budget.reset_alignment
    )


class UserService:
    def __init__(self, db: Database, changes: ChangeListener) -> None:
        self._db = db
        self._changes = changes

    async def create(self, spec: NewUser) -> UserView:
        now = utcnow()
        allowed = check_allowed_models(spec.allowed_models)
        async with available(self._db.session()) as session:
            existing = await users_repo.get_user(session, spec.user_id)
            if existing is not None and existing.deleted_at is None:
                raise _exists(spec.user_id)
            budget = None
            if spec.budget_id is not None:
                found = await budgets_repo.get_budget(session, spec.budget_id)
                budget = _found(found, spec.budget_id)
            user, created = await users_repo.ensure_user(session, spec.user_id, now=now)
            if existing is None and not created:
                # Another request created this id between our read and our insert.
                raise _exists(spec.user_id)
            # A revived user starts from zero spend, like a new one; its leases are left
            # alone because in-flight requests may still settle against them.
            user.deleted_at = None
            user.spend = ZERO
            user.alias = spec.alias
            user.blocked = spec.blocked
            user.allowed_models = allowed
            user.metadata_ = dict(spec.metadata)
            user.updated_at = now
            _assign_budget(user, budget, now)
            await session.flush()
            held = await leases.held_by_users(session, [user.user_id])
            (view,) = _views([user], held)
        self._changes.users_changed()
        return view

    async def list_users(self, page: Page) -> list[UserView]:
        async with available(self._db.session()) as session:
            users = await users_repo.list_users(session, skip=page.skip, limit=page.limit)
            held = await leases.held_by_users(session, (user.user_id for user in users))
            return _views(users, held)

    async def get(self, user_id: str) -> UserView:
        async with available(self._db.session()) as session:
            user = _live(await users_repo.get_user(session, user_id), user_id)
            held = await leases.held_by_users(session, [user.user_id])
            (view,) = _views([user], held)
            return view

    async def update(self, user_id: str, patch: UserPatch) -> UserView:
        now = utcnow()
        async with available(self._db.session()) as session:
            user = _live(await users_repo.get_user(session, user_id), user_id)
            if not isinstance(patch.budget_id, Unset) and patch.budget_id != user.budget_id:
                budget = None
                if patch.budget_id is not None:
                    found = await budgets_repo.get_budget(session, patch.budget_id)
                    budget = _found(found, patch.budget_id)
                _assign_budget(user, budget, now)
            if not isinstance(patch.alias, Unset):
                user.alias = patch.alias
            if isinstance(patch.blocked, bool):
                user.blocked = patch.blocked
            if not isinstance(patch.allowed_models, Unset):
                user.allowed_models = check_allowed_models(patch.allowed_models)
            if isinstance(patch.metadata, dict):
                user.metadata_ = dict(patch.metadata)
            user.updated_at = now
            await session.flush()
            held = await leases.held_by_users(session, [user.user_id])
            (view,) = _views([user], held)
        self._changes.users_changed()
        return view

    async def delete(self, user_id: str) -> None:
        now = utcnow()
        async with available(self._db.session()) as session:
            user = _live(await users_repo.get_user(session, user_id), user_id)
            user.deleted_at = now
            user.updated_at = now
            await users_repo.deactivate_keys(session, user_id)
        self._changes.users_changed()
        self._changes.keys_changed()

    async def usage(self, user_id: str, where: UsageFilter, page: Page) -> list[UsageRowView]:
        async with available(self._db.session()) as session:
            _live(await users_repo.get_user(session, user_id), user_id)
            rows = await usage_repo.list_usage(
                session, replace(where, user_id=user_id), skip=page.skip, limit=page.limit
            )
            return [row_view(row) for row in rows]


def _exists(user_id: str) -> Conflict:
    return Conflict(f"User with id '{user_id}' already exists", param="user_id")


def _live(user: User | None, user_id: str) -> User:
    if user is None or user.deleted_at is not None:
        raise user_not_found(user_id)
    return user


def _found(budget: Budget | None, budget_id: str) -> Budget:
    if budget is None:
        raise budget_not_found(budget_id)
    return budget

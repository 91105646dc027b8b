"""Admission: who is calling, may they use this model, what does it cost, can they afford it.

``Authenticator`` turns a credential into a ``Caller`` (master key, or a virtual key looked
up by its SHA-256 through a short-lived cache). ``Admission`` then settles the billed user,
checks blocks and ``allowed_models``, finds the price and holds the worst-case cost against
every budget that applies.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from otari_gateway.billing.cost import Price, estimate_cost
from otari_gateway.billing.ledger import Hold, Ledger
from otari_gateway.billing.pricing import PriceBook
from otari_gateway.config import GatewayConfig
from otari_gateway.control.keys import hash_key
from otari_gateway.control.values import USER_ID_PATTERN, USER_ID_RULE
from otari_gateway.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
)
from otari_gateway.limits import UNLIMITED, Limiter
from otari_gateway.limits.base import tighter
from otari_gateway.pipeline.auxiliary import expected_units
from otari_gateway.pipeline.cache import TTLCache
from otari_gateway.pipeline.request import Caller, GatewayRequest, Surface
from otari_gateway.pipeline.routing import Target
from otari_gateway.pipeline.tokenizer import Tokenizers
from otari_gateway.pipeline.tokens import count_input_tokens, max_output_tokens
from otari_gateway.store import access
from otari_gateway.store.access import KeyRecord, UserRecord
from otari_gateway.store.database import Database
from otari_gateway.store.types import utcnow

if TYPE_CHECKING:
    from otari_gateway.telemetry.metrics import Metrics

MISSING_CREDENTIAL = "Missing Otari-Key, Authorization, or x-api-key header"
CACHE_SECONDS = 1.0


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The credential, from ``Otari-Key``, then ``Authorization: Bearer``, then ``x-api-key``."""
    value = headers.get("otari-key")
    if value:
        return _strip_bearer(value)
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    return value.strip() if value and value.strip() else None


def _strip_bearer(value: str) -> str:
    scheme, found, token = value.strip().partition(" ")
    return token.strip() if found and scheme.lower() == "bearer" else value.strip()


class Authenticator:
    """Checks the presented credential against the master key, then the virtual keys."""

    def __init__(self, db: Database | None) -> None:
        # Unset until start-up has read or generated it (the port is not open before).
        self._master_digest = b""
        self._db = db
        self._keys: TTLCache[KeyRecord] = TTLCache(CACHE_SECONDS)

    def use_master_digest(self, digest_hex: str) -> None:
        self._master_digest = bytes.fromhex(digest_hex)

    def forget(self) -> None:
        """Drop cached keys (a key was changed on this process)."""
        self._keys.clear()

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        token = presented_token(headers)
        if token is None:
            raise AuthenticationFailed(MISSING_CREDENTIAL, code="missing_api_key")
        digest = hash_key(token)
        # Comparing fixed-length digests keeps the comparison constant-time whatever the
        # token's length.
        if self._master_digest and hmac.compare_digest(bytes.fromhex(digest), self._master_digest):
            return Caller(is_master=True)
        key = await self._lookup(digest)
        if key is None:
            raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
        if not key.is_active:
            raise AuthenticationFailed("API key is inactive", code="inactive_api_key")
        if key.expires_at is not None and key.expires_at <= utcnow():
            raise AuthenticationFailed("API key has expired", code="expired_api_key")
        return Caller(is_master=False, key=key, user_id=key.user_id)

    async def _lookup(self, digest: str) -> KeyRecord | None:
        db = self._db
        if db is None:
            return None
        return await self._keys.get(digest, lambda d: access.key_by_hash(db, d))


def model_allowed(patterns: tuple[str, ...] | None, target: Target, requested: str) -> bool:
    """``None`` allows everything; entries are exact selectors, ``inst:*`` or ``inst:pre*``."""
    if patterns is None:
        return True
    for pattern in patterns:
        for name in (target.selector, requested):
            if pattern == name or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                return True
    return False


_USER_ID = re.compile(USER_ID_PATTERN)


def _named_user(request: GatewayRequest) -> str | None:
    if request.surface is Surface.MESSAGES:
        metadata = request.body.get("metadata")
        value = metadata.get("user_id") if isinstance(metadata, dict) else None
    else:
        value = request.body.get("user")
    return value if isinstance(value, str) and value else None


def check_models(
    key: KeyRecord | None, user: UserRecord, target: Target, requested: str, where: str = ""
) -> None:
    """403 unless the key's and the user's ``allowed_models`` both allow the model;
    ``where`` says where a model not in the request's own ``model`` field came from."""
    scopes = (("API key", key.allowed_models if key else None), ("user", user.allowed_models))
    for scope, patterns in scopes:
        if not model_allowed(patterns, target, requested):
            raise PermissionDenied(
                f"model '{requested}'{where} is not allowed for this {scope}",
                param="model",
                code="model_not_allowed",
            )


@dataclass(frozen=True, slots=True)
class Admitted:
    """What admission decided for one request; settlement needs all of it."""

    user_id: str
    key_id: str | None
    price: Price | None
    hold: Hold
    input_tokens: int
    # Token-limited scopes and the tokens reserved in each, corrected at settlement.
    token_scopes: tuple[str, ...] = ()
    reserved_tokens: int = 0
    limit_headers: Mapping[str, str] = field(default_factory=dict)


class Admission:
    def __init__(
        self,
        config: GatewayConfig,
        db: Database,
        prices: PriceBook,
        ledger: Ledger,
        tokenizers: Tokenizers,
        provider_types: Mapping[str, str],
        limiter: Limiter,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._config = config
        self._limiter = limiter
        self._db = db
        self._prices = prices
        self._ledger = ledger
        self._tokenizers = tokenizers
        self._provider_types = dict(provider_types)
        self._users: TTLCache[UserRecord] = TTLCache(CACHE_SECONDS)

    def forget(self) -> None:
        """Drop cached users (a user or budget was changed on this process)."""
        self._users.clear()

    async def admit(self, request: GatewayRequest, target: Target, user_id: str) -> Admitted:
        caller = request.caller
        user = await self.user(user_id, create=caller.is_master)
        key = caller.key
        check_models(key, user, target, request.model)
        price = await self.price(target)
        counter = self._tokenizers.counter(target.model)
        input_tokens = await count_input_tokens(request.body, counter)
        output = max_output_tokens(request.body, self._config.budget_estimate_default_output_tokens)
        token_scopes, headers = await self._rate_limit(key, input_tokens + output)
        estimate = Decimal(0)
        if price is not None and not price.is_free:
            estimate = estimate_cost(input_tokens, output, price, expected_units(request))
        if await self._ledger.reset_due_periods(user, key, utcnow()):
            self._users.clear()
            user = await self.user(user.user_id, create=False)
        hold = await self._ledger.reserve(user, key, estimate)
        return Admitted(
            user.user_id,
            key.id if key else None,
            price,
            hold,
            input_tokens,
            token_scopes,
            input_tokens + output,
            headers,
        )

    async def _rate_limit(
        self, key: KeyRecord | None, tokens: int
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """Deployment-wide, then per-key limits; the tighter decision's headers."""
        limits = [("global", self._config.rate_limit_rpm, self._config.rate_limit_tpm)]
        if key is not None:
            limits.append((f"key:{key.id}", key.rpm_limit, key.tpm_limit))
        decision = UNLIMITED
        token_scopes: list[str] = []
        for scope, rpm, tpm in limits:
            if rpm is None and tpm is None:
                continue
            found = await self._limiter.acquire(scope, rpm=rpm, tpm=tpm, tokens=tokens)
            if not found.allowed:
                for reserved in token_scopes:
                    await self._limiter.adjust_tokens(reserved, -tokens)
                if self._metrics is not None:
                    self._metrics.rate_limited(scope)
                whose = "the gateway" if scope == "global" else "this API key"
                raise RateLimited(
                    f"rate limit exceeded for {whose}; retry after {found.retry_after} s",
                    code="rate_limit_exceeded",
                    headers=found.headers(),
                )
            if tpm is not None:
                token_scopes.append(scope)
            decision = tighter(decision, found)
        return tuple(token_scopes), decision.headers()

    def settled(self, hold: Hold, cost: Decimal) -> None:
        """Return what a finished request held beyond its cost to this process's leases."""
        self._ledger.settled(hold, cost)

    async def settle_tokens(self, admitted: Admitted, actual: int) -> None:
        """Correct each token-limited scope from the estimate to what was used."""
        for scope in admitted.token_scopes:
            await self._limiter.adjust_tokens(scope, actual - admitted.reserved_tokens)

    def billed_user(self, request: GatewayRequest) -> str:
        """The user a request is billed to: the key's, or the one a master-key request names."""
        if request.surface is not Surface.MESSAGES:
            return self.acting_user(request.caller, _named_user(request), "user")
        # Anthropic's metadata.user_id is an opaque end-user id that clients set routinely
        # (Claude Code does): it names the user to bill only for the master key, and a
        # virtual key's request is never refused over it.
        named = _named_user(request) if request.caller.is_master else None
        return self.acting_user(request.caller, named, "metadata.user_id")

    def acting_user(self, caller: Caller, named: str | None, where: str, *, also: str = "") -> str:
        """The key's user, or for the master key the user ``named`` (found at ``where``, or
        ``also`` says where else)."""
        if caller.is_master:
            if named is None:
                raise InvalidRequest(
                    "requests made with the master key must name the user to bill in "
                    f"'{where}'{also}",
                    param=where,
                    code="user_required",
                )
            if _USER_ID.fullmatch(named) is None:
                raise InvalidRequest(f"'{where}' must be a user id: {USER_ID_RULE}", param=where)
            return named
        assert caller.user_id is not None
        if named is not None and named != caller.user_id and self._config.reject_user_mismatch:
            raise PermissionDenied(
                f"user '{named}' does not match the API key's user",
                param="user",
                code="user_mismatch",
            )
        return caller.user_id

    async def user(self, user_id: str, *, create: bool) -> UserRecord:
        """The user to bill, created first when ``create`` (a master-key request names a new
        one); 403 when blocked, deleted or unknown."""
        user = await self._users.get(user_id, lambda u: access.user_by_id(self._db, u))
        if user is None and create:
            await access.ensure_user(self._db, user_id)
            self._users.clear()
            user = await self._users.get(user_id, lambda u: access.user_by_id(self._db, u))
        if user is None or user.deleted:
            raise PermissionDenied(f"User '{user_id}' does not exist", code="user_not_found")
        if user.blocked:
            raise PermissionDenied(f"User '{user.user_id}' is blocked", code="user_blocked")
        return user

    async def price(self, target: Target) -> Price | None:
        """The model's price; 402 when it has none and ``require_pricing`` is on."""
        provider_type = self._provider_types.get(target.instance, target.instance)
        price = await self._prices.lookup(target.selector, provider_type, target.model)
        if price is None and self._config.require_pricing:
            raise PaymentRequired(
                f"model '{target.selector}' has no price: add it under 'pricing:' in the config "
                f"or with POST /v1/pricing (or set require_pricing: false)",
                param="model",
                code="model_not_priced",
            )
        return price

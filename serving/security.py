"""Who is asking, and how often: bearer-token authentication, roles, and rate limits, as route dependencies.

``Caller(budget)`` is what a route declares: it verifies the bearer token (401 when missing or invalid; public
routes take ``required=False``), checks the role (403), then spends one request of ``budget`` (``ingest``,
``uploads`` or ``reads``) per token and per client IP in Redis (429 with ``Retry-After`` when spent). The
principal it returns is the only source of the acting user: routes never take a user from a body or query.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.deps import Stores, get_stores
from serving.errors import ApiError, is_unreachable
from socialpulse.auth import AuthError, Principal, TokenVerifier, erased_key

log = logging.getLogger("serving")

BUDGETS = ("ingest", "uploads", "reads")
_bearer = HTTPBearer(auto_error=False, description="a JWT from the identity provider (embedded default: "
                     "`socialpulse auth token --user ID [--role user|moderator|admin]`)")

# KEYS[1] = the token user's closed-account marker ('' for anonymous requests): set, the request is refused
# ({-1, 0}). Then GCRA over every other key at once: a request is allowed only if every key has room, and only
# an allowed request spends. KEYS[1+i] = a limit key; ARGV[1] = now (ms), ARGV[1+i] = its emission interval (ms
# per request, 60000 / limit). Each key holds its theoretical arrival time and expires when it no longer
# matters. Returns {1, 0} when allowed, {0, ms until the first key has room} when not.
_GCRA_LUA = """
if KEYS[1] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0} end
local now = tonumber(ARGV[1])
local window = 60000
local wait = 0
local tats = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local interval = tonumber(ARGV[i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat + interval
  local allow_at = tats[i] - window
  if now < allow_at and allow_at - now > wait then wait = allow_at - now end
end
if wait > 0 then return {0, wait} end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.max(1, tats[i] - now))
end
return {1, 0}
"""
RATE_PREFIX = "ratelimit:"
#: what :meth:`RateLimiter.spend` answers for a closed account's token
CLOSED = -1.0
#: after Redis was found unreachable, requests go unlimited this long before the limiter asks again
REDIS_DOWN_SKIP_S = 5.0


class RateLimiter:
    """Per-minute budgets in Redis (GCRA: a full minute's budget may come as a burst, then requests are spaced)."""

    def __init__(self, stores: Stores):
        self.stores = stores
        self._script = None
        self._warned = 0.0
        self._skip_until = 0.0

    def spend(self, budget: str, principal: Principal | None, ip: str) -> float:
        """Spend one request; 0 when allowed, else the seconds to wait (:data:`CLOSED` for a closed account's
        token). Fails open when Redis is unreachable (the reads that can be served without Redis still are;
        ingest then fails on its own store)."""
        settings = self.stores.settings
        limit = getattr(settings, f"rate_limit_{budget}_per_min")
        keys = [erased_key(settings, principal.user_id) if principal is not None else ""]
        intervals = []
        if limit > 0:
            if principal is not None:
                keys.append(f"{RATE_PREFIX}{budget}:token:{principal.user_id}")
                intervals.append(60000.0 / limit)
            keys.append(f"{RATE_PREFIX}{budget}:ip:{ip}")
            intervals.append(60000.0 / (limit * settings.rate_limit_ip_factor))
        if len(keys) == 1 and principal is None:
            return 0.0
        if time.monotonic() < self._skip_until:
            return 0.0
        try:
            if self._script is None:
                self._script = self.stores.redis.register_script(_GCRA_LUA)
            allowed, wait_ms = self._script(keys=keys, args=[int(time.time() * 1000), *intervals])
        except Exception as exc:  # noqa: BLE001 - a rate limiter must never take the API down with it
            if not is_unreachable(exc):
                raise
            # not asked again for a few seconds: every request would otherwise wait for the reconnection attempts
            self._skip_until = time.monotonic() + REDIS_DOWN_SKIP_S
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limits not enforced: Redis is unreachable (%s)", type(exc).__name__)
            return 0.0
        if int(allowed) < 0:
            return CLOSED
        return 0.0 if int(allowed) else int(wait_ms) / 1000.0


def _verifier(stores: Stores) -> TokenVerifier:
    verifier = getattr(stores, "_verifier", None)
    if verifier is None:
        verifier = stores._verifier = TokenVerifier(stores.settings)
    return verifier


def _limiter(stores: Stores) -> RateLimiter:
    limiter = getattr(stores, "_limiter", None)
    if limiter is None:
        limiter = stores._limiter = RateLimiter(stores)
    return limiter


def client_ip(request: Request) -> str:
    """The client's address as the server saw it (behind a proxy, uvicorn's --forwarded-allow-ips makes it the
    real client's)."""
    return request.client.host if request.client else "unknown"


UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


class Caller:
    """A route dependency: the verified principal (or None on a public route without a token), after its role
    is checked and one request of ``budget`` is spent."""

    def __init__(self, budget: str, *, role: str = "user", required: bool = True, closed_ok: bool = False):
        if budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}")
        self.budget, self.role, self.required, self.closed_ok = budget, role, required, closed_ok

    def __call__(self, request: Request, stores: Annotated[Stores, Depends(get_stores)],
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
        principal = None
        if credentials is None:
            if self.required:
                raise ApiError(401, "authentication required: send Authorization: Bearer <token>", headers=UNAUTHORIZED)
        else:
            try:
                principal = _verifier(stores).verify(credentials.credentials)
            except AuthError as exc:
                raise ApiError(401, str(exc), headers=UNAUTHORIZED) from None
            except ConnectionError:
                raise ApiError(503, "the identity provider's keys are unreachable; retry in a few seconds",
                               headers={"Retry-After": "5"}) from None
            if not principal.has_role(self.role):
                raise ApiError(403, f"this needs the {self.role} role (the token has {principal.role})")
        wait = _limiter(stores).spend(self.budget, principal, client_ip(request))
        if wait == CLOSED and self.closed_ok:
            wait = 0.0
        if wait == CLOSED:
            raise ApiError(403, "this account is closed (its deletion was requested); its tokens are no longer accepted")
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise ApiError(429, f"rate limit of {self.budget} requests exceeded; retry in {retry} s",
                           headers={"Retry-After": str(retry)}, budget=self.budget)
        request.state.principal = principal
        return principal


def forbid_other_user(principal: Principal, user_id: str, what: str) -> None:
    """403 unless ``principal`` may act for ``user_id`` (self, or an admin)."""
    if not principal.may_act_for(user_id):
        raise ApiError(403, f"{what} of user {user_id} is only available to that user (or an admin)")


#: the dependencies routes declare
IngestUser = Annotated[Principal, Depends(Caller("ingest"))]
UploadUser = Annotated[Principal, Depends(Caller("uploads"))]
ReadUser = Annotated[Principal, Depends(Caller("reads"))]
PublicReader = Annotated[Principal | None, Depends(Caller("reads", required=False))]
Moderator = Annotated[Principal, Depends(Caller("reads", role="moderator"))]
ModeratorWrite = Annotated[Principal, Depends(Caller("ingest", role="moderator"))]
Admin = Annotated[Principal, Depends(Caller("reads", role="admin"))]
#: a closed account's token still reads the progress of its own deletion (nothing else)
ClosingUser = Annotated[Principal, Depends(Caller("reads", closed_ok=True))]

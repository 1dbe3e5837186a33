"""Identity: OAuth2 bearer tokens (JWT), verified against a configured issuer and its JWKS.

Production points ``SOCIALPULSE_AUTH_JWKS_URL`` at the identity provider's key set (any OIDC provider publishes
one) and never signs a token itself. The embedded default works offline: the platform generates its own
signing key (an RS256 key pair under the state folder, ``auth/dev-signing-key.pem``), verifies tokens against
its public half, serves it as JWKS at ``/.well-known/jwks.json``, and ``socialpulse auth token --user ID
[--role ...]`` prints a token. Production refuses that key (settings, at start).

A token's ``sub`` is the user id, its ``role`` claim one of :data:`ROLES` (absent: ``user``). Everything a
request may do follows from the verified principal, never from a body or query field.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from socialpulse.settings import Settings

ROLES = ("user", "moderator", "admin")
#: what each role may also do: a moderator works the review queue, an admin does everything
ROLE_RANK = {"user": 0, "moderator": 1, "admin": 2}
ALGORITHMS = ["RS256", "ES256"]
#: tolerated clock difference between the issuer and this server
LEEWAY_S = 30
DEV_KEY_NAME = "dev-signing-key.pem"
#: an unknown ``kid`` refetches the provider's key set at most this often (forged kids cannot hammer it)
JWKS_REFETCH_COOLDOWN_S = 30.0


class AuthError(Exception):
    """A token that is missing, malformed, expired, or not signed by the configured issuer (401)."""


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: str
    role: str = "user"
    token_id: str | None = None

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def may_act_for(self, user_id: str) -> bool:
        """Whether this principal may read or change ``user_id``'s personal data (self or admin)."""
        return self.user_id == user_id or self.role == "admin"


# --- the embedded signer ------------------------------------------------------------------------


def dev_key_path(settings: Settings) -> Path:
    return settings.home_abs / "auth" / DEV_KEY_NAME


_KEY_LOCK = threading.Lock()


def _load_or_create_dev_key(path: Path) -> rsa.RSAPrivateKey:
    with _KEY_LOCK:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            try:  # two processes starting at once: the first key written wins, both use it
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return serialization.load_pem_private_key(path.read_bytes(), password=None)


def signing_key(settings: Settings):
    """The private key this platform signs with: ``SOCIALPULSE_AUTH_SIGNING_KEY`` (a PEM file) or the embedded
    development key (created on first use)."""
    if settings.auth_signing_key is not None:
        return serialization.load_pem_private_key(Path(settings.auth_signing_key).read_bytes(), password=None)
    return _load_or_create_dev_key(dev_key_path(settings))


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(public_key) -> str:
    """A stable key id: the first 16 hex digits of the SHA-256 of the public key's DER form."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def public_jwks(settings: Settings) -> dict:
    """The JWKS of the embedded signer's public key (what ``/.well-known/jwks.json`` serves)."""
    public = signing_key(settings).public_key()
    numbers = public.public_numbers()
    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": key_id(public),
                      "n": _b64(numbers.n), "e": _b64(numbers.e)}]}


def issue_token(settings: Settings, user_id: str, role: str = "user", ttl_s: int | None = None) -> str:
    """A token for ``user_id`` with ``role``, signed by this platform's key (development and tests; production
    tokens come from the identity provider)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    key = signing_key(settings)
    now = int(time.time())
    claims = {"iss": settings.auth_issuer, "aud": settings.auth_audience, "sub": user_id, "role": role,
              "iat": now, "nbf": now, "exp": now + (ttl_s or settings.auth_token_ttl_s), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id(key.public_key())})


# --- verification -------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies bearer tokens: signature (against the JWKS), issuer, audience, expiry, subject and role.

    With ``auth_jwks_url`` set, keys come from that URL (fetched on first use, cached, refetched when a token
    names an unknown ``kid``, i.e. after the provider rotates keys); otherwise from the embedded signer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, lifespan=3600, timeout=5,
                                       cooldown_duration=JWKS_REFETCH_COOLDOWN_S) if settings.auth_jwks_url else None
        self._local: dict[str, object] | None = None

    def _key_for(self, token: str):
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed bearer token: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthError(f"token algorithm {header.get('alg')!r} is not accepted (use one of {', '.join(ALGORITHMS)})")
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError as exc:
                raise ConnectionError(f"the identity provider's JWKS is unreachable: {exc}") from None
            except jwt.PyJWTError as exc:
                raise AuthError(f"token signed by an unknown key: {exc}") from None
        if self._local is None:
            public = signing_key(self.settings).public_key()
            self._local = {key_id(public): public}
        kid = header.get("kid")
        key = self._local.get(kid) if kid else next(iter(self._local.values()))
        if key is None:
            raise AuthError("token signed by an unknown key (kid not in this platform's JWKS)")
        return key

    def verify(self, token: str) -> Principal:
        key = self._key_for(token)
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.settings.auth_audience,
                                issuer=self.settings.auth_issuer, leeway=LEEWAY_S,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"token is not for this API (audience must be {self.settings.auth_audience!r})") from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"token issued by an unknown issuer (expected {self.settings.auth_issuer!r})") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return principal_of(claims)


def principal_of(claims: dict) -> Principal:
    """The principal of verified claims; a subject that is not a valid user id or an unknown role is refused."""
    from socialpulse.ingest import ID_PATTERN

    sub = claims.get("sub")
    if not isinstance(sub, str) or not re.fullmatch(ID_PATTERN, sub) or len(sub) > 64:
        raise AuthError("token subject is not a valid user id (1-64 of letters, digits, _ - : .)")
    role = claims.get("role", "user")
    if role not in ROLES:
        raise AuthError(f"token role {role!r} is unknown (one of {', '.join(ROLES)})")
    return Principal(user_id=sub, role=role, token_id=claims.get("jti"))


def jwks_json(settings: Settings) -> str:
    return json.dumps(public_jwks(settings))


# --- closed accounts ------------------------------------------------------------------------------

#: Redis key prefix of closed accounts (named by their audit pseudonym, never their id)
ERASED_PREFIX = "auth:erased:"
#: how long a closed account's tokens stay refused: longer than any token lives
ERASED_TTL_S = 30 * 24 * 3600


def erased_key(settings: Settings, user_id: str) -> str:
    from socialpulse.audit import ref

    return ERASED_PREFIX + ref(settings, user_id)


def close_account(redis_client, settings: Settings, user_id: str) -> None:
    """From now on every request with a token of ``user_id`` is refused (403): set when a deletion is requested,
    so nothing new of the user is accepted while it runs, nor afterwards from a token issued before."""
    redis_client.set(erased_key(settings, user_id), "1", ex=ERASED_TTL_S)

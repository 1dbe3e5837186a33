"""Tokens: the embedded signer, verification against a JWKS (embedded or an identity provider's), claims and roles."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from socialpulse.auth import AuthError, Principal, TokenVerifier, issue_token, key_id, public_jwks
from socialpulse.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(home=tmp_path)


def test_an_issued_token_verifies_to_its_user_and_role(settings):
    p = TokenVerifier(settings).verify(issue_token(settings, "u-42", "moderator"))
    assert (p.user_id, p.role) == ("u-42", "moderator") and p.token_id


def test_the_dev_key_is_made_once_private_and_shared(settings):
    issue_token(settings, "u-1")
    key_file = settings.home_abs / "auth" / "dev-signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    before = key_file.read_bytes()
    assert TokenVerifier(settings).verify(issue_token(settings, "u-2")).user_id == "u-2"
    assert key_file.read_bytes() == before


def _forge(settings, key=None, **claims) -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    base = {"iss": settings.auth_issuer, "aud": settings.auth_audience, "sub": "u-1", "iat": now, "exp": now + 60}
    return jwt.encode({k: v for k, v in {**base, **claims}.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": key_id(key.public_key())})


def test_tokens_from_another_key_issuer_audience_or_time_are_refused(settings, tmp_path):
    from socialpulse.auth import signing_key

    verifier = TokenVerifier(settings)
    own = signing_key(settings)
    cases = {
        "unknown key": _forge(settings),
        "unknown issuer": _forge(settings, own, iss="https://evil.example/"),
        "not for this API": _forge(settings, own, aud="another-api"),
        "expired": _forge(settings, own, exp=int(time.time()) - 120),
        "exp": _forge(settings, own, exp=None),
        "subject": _forge(settings, own, sub="not an id!"),
        "role 'root'": _forge(settings, own, role="root"),
    }
    for reason, token in cases.items():
        with pytest.raises(AuthError, match=reason):
            verifier.verify(token)
    with pytest.raises(AuthError, match="malformed"):
        verifier.verify("not.a.token")
    unsigned = jwt.encode({"sub": "u-1", "iss": settings.auth_issuer, "aud": settings.auth_audience,
                           "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError, match="algorithm 'none'"):
        verifier.verify(unsigned)
    hs = jwt.encode({"sub": "u-1"}, "secret-guessing-the-public-key", algorithm="HS256")
    with pytest.raises(AuthError, match="HS256"):
        verifier.verify(hs)
    # a token signed by this platform for another platform's issuer settings is refused there too
    other = Settings(home=tmp_path / "other")
    with pytest.raises(AuthError, match="unknown key"):
        TokenVerifier(other).verify(issue_token(settings, "u-1"))


def test_an_identity_providers_jwks_verifies_its_tokens(tmp_path):
    """Production: keys come from the provider's JWKS URL (here a local HTTP server), rotated keys are found."""
    provider = Settings(home=tmp_path / "idp", auth_issuer="https://id.example/")
    keys = {"body": json.dumps(public_jwks(provider)).encode(), "hits": 0}

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            keys["hits"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(keys["body"])

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = Settings(home=tmp_path / "api", auth_issuer="https://id.example/",
                       auth_jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json")
        verifier = TokenVerifier(api)
        p = verifier.verify(issue_token(provider, "u-7", "admin"))
        assert (p.user_id, p.role) == ("u-7", "admin")
        # the provider rotates its key: a token with the new kid makes the verifier fetch the key set again
        rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = rotated.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        (tmp_path / "new.pem").write_bytes(pem)
        provider2 = provider.model_copy(update={"auth_signing_key": tmp_path / "new.pem"})
        keys["body"] = json.dumps(public_jwks(provider2)).encode()
        fetched = keys["hits"]
        verifier._client.cooldown_duration = 0  # the key set is refetched on an unknown kid, at most every 30 s
        assert verifier.verify(issue_token(provider2, "u-8")).user_id == "u-8"
        assert keys["hits"] == fetched + 1
        # tokens the API's own (embedded) key would sign are not the provider's
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(_forge(api))
    finally:
        server.shutdown()


def test_an_unreachable_jwks_is_a_connection_error_not_a_rejection(tmp_path):
    provider = Settings(home=tmp_path / "idp")
    api = Settings(home=tmp_path / "api", auth_jwks_url="http://127.0.0.1:9/jwks.json")
    with pytest.raises(ConnectionError, match="unreachable"):
        TokenVerifier(api).verify(issue_token(provider, "u-1"))


def test_roles_rank_and_who_may_act_for_whom():
    user, mod, admin = Principal("u-1"), Principal("m-1", "moderator"), Principal("a-1", "admin")
    assert not user.has_role("moderator") and mod.has_role("moderator") and admin.has_role("moderator")
    assert not mod.has_role("admin") and admin.has_role("admin") and user.has_role("user")
    assert user.may_act_for("u-1") and not user.may_act_for("u-2")
    assert not mod.may_act_for("u-1") and admin.may_act_for("u-1")
    with pytest.raises(ValueError, match="role must be one of"):
        issue_token(Settings(), "u-1", "root")

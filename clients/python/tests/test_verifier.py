"""The Verifier against the real Tessera: JWTs across a signing-key rotation, a revoked key's tokens once
the JWKS cache expires, opaque session and API tokens through /gateway/verify, logout, scopes, middleware."""
from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest

from tessera_client import ASGIMiddleware, ClientCredentials, TesseraVerifyError, TokenLogin, Verifier, WSGIMiddleware


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def sdk(tessera, **kw):
    key = tessera.sdk_key(**kw)
    return key, ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])


def test_jwt_checks_audience_issuer_type_algorithm_and_scopes(tessera, home):
    key, cc = sdk(tessera)
    v = Verifier(tessera.issuer, tessera.issuer)
    token = cc.get_token()
    got = v.verify(token, scopes=["api"])
    assert (got.kind, got.subject, got.client_id) == ("jwt", key["client_id"], key["client_id"])
    assert set(got.scopes) == {"api", "quantum_tokens"}
    assert got.claims["iss"] == tessera.issuer and not got.checked_remotely

    def refused(verifier, tok, reason, **kw):
        with pytest.raises(TesseraVerifyError) as e:
            verifier.verify(tok, **kw)
        assert e.value.reason == reason, e.value
        return e.value

    assert refused(Verifier(tessera.issuer, "https://other.example.com"), token, "audience").status == 401
    assert refused(Verifier("https://elsewhere.example.com", tessera.issuer, jwks_uri=f"{tessera.issuer}/.well-known/jwks.json"), token, "issuer")
    e = refused(v, token, "scope", scopes=["introspect"])
    assert (e.code, e.status, e.scopes) == ("insufficient_scope", 403, ["introspect"])
    h, p, s = token.split(".")
    refused(v, f"{h}.{p}.{s[:-4]}AAAA", "signature")
    none_alg = jwt.encode(jwt.decode(token, options={"verify_signature": False}), None, algorithm="none", headers={"typ": "at+jwt"})
    refused(v, none_alg, "algorithm")
    hs = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt", "kid": kid_of(token)})
    refused(v, hs, "algorithm")
    refused(v, "", "missing")
    with pytest.raises(TesseraVerifyError, match="not a Bearer credential"):
        v.verify_request({"Authorization": "Basic abc"})
    assert v.verify_request({"Authorization": f"Bearer {token}"}).subject == key["client_id"]


def test_rotation_verifies_with_zero_failures_then_a_revoked_keys_tokens_are_refused(tessera, home):
    _, cc = sdk(tessera)
    v = Verifier(tessera.issuer, tessera.issuer, jwks_cooldown=1.0)  # the server publishes JWKS with max-age 1 s
    old = cc.get_token()
    old_kid = kid_of(old)
    v.verify(old)
    rotated = tessera.cli("keys", "rotate")
    failures, kids, checked = [], {old_kid}, 0
    deadline = time.time() + 30
    while time.time() < deadline and len(kids) < 2:
        cc.invalidate()
        tok = cc.get_token()
        kids.add(kid_of(tok))
        try:
            v.verify(tok)
            v.verify(old)
        except TesseraVerifyError as e:
            failures.append(e)
        checked += 1
        time.sleep(0.1)
    assert len(kids) == 2, f"the new key signs after the pre-publication ({rotated})"
    for _ in range(5):  # a few more with the new key
        cc.invalidate()
        v.verify(cc.get_token())
    assert failures == [], "no token failed across the rotation"
    assert checked > 1

    tessera.cli("keys", "revoke", old_kid)
    refused = None
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            v.verify(old)
        except TesseraVerifyError as e:
            refused = e
            break
        time.sleep(0.2)
    assert refused is not None, "the revoked key's token is refused once the JWKS cache expires"
    assert refused.reason == "unknown_kid" and refused.code == "invalid_token"
    cc.invalidate()
    v.verify(cc.get_token())  # the active key goes on verifying


def test_session_tokens_are_checked_remotely_and_refused_after_logout(tessera, home):
    tl = TokenLogin(issuer=tessera.issuer, api_token=tessera.api_token)
    session = tl.login()
    assert session.token.startswith("tsr_ses_")
    v = Verifier(tessera.issuer, tessera.issuer, remote_cache_ttl=0)
    got = v.verify(session.token, scopes=["api"])
    assert (got.kind, got.subject, got.checked_remotely) == ("opaque", tessera.user_id, True)
    assert v.verify_request({"x-access-token": tl.get_token()}).user_id == tessera.user_id
    assert tl.headers() == {"x-access-token": session.token}
    tl.logout()
    with pytest.raises(TesseraVerifyError) as e:
        v.verify(session.token)
    assert (e.value.reason, e.value.code, e.value.status) == ("revoked", "invalid_token", 401)
    assert tl.get_token() != session.token, "a new login"


def test_token_login_from_a_saved_account_and_beside_a_default_sdk_key_account(tessera, home):
    from tessera_client import save_account

    save_account("sdk", issuer=tessera.issuer, client_id="s_1", client_secret="x")  # the default, no API token
    save_account("pat", issuer=tessera.issuer, api_token=tessera.api_token)
    assert TokenLogin(account="pat").get_token().startswith("tsr_ses_")
    with pytest.raises(Exception, match="holds no api_token"):
        TokenLogin(account="sdk")
    assert TokenLogin(issuer=tessera.issuer).login(tessera.api_token).user_id == tessera.user_id


def test_api_tokens_are_checked_remotely(tessera, home):
    v = Verifier(tessera.issuer, tessera.issuer)
    got = v.verify(tessera.api_token, scopes=["admin"])
    assert got.kind == "opaque" and got.subject == tessera.user_id
    with pytest.raises(TesseraVerifyError) as e:
        v.verify("tsr_pat_" + "A" * 43)
    assert e.value.reason == "revoked"


def test_remote_jwt_checks_see_a_deleted_sdk_key(tessera, home):
    key, cc = sdk(tessera)
    token = cc.get_token()
    v = Verifier(tessera.issuer, tessera.issuer, remote_jwt=True, remote_cache_ttl=0)
    assert v.verify(token).checked_remotely
    tessera.api("DELETE", f"/api/sdk-keys/{key['client_id']}", key["_owner"]["token"])
    with pytest.raises(TesseraVerifyError, match="revoked"):
        v.verify(token)
    Verifier(tessera.issuer, tessera.issuer).verify(token)  # locally still valid until it expires


def test_wsgi_middleware(tessera, home):
    _, cc = sdk(tessera)
    seen = {}

    def app(environ, start_response):
        seen["token"] = environ.get("tessera.token")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    mw = WSGIMiddleware(app, Verifier(tessera.issuer, tessera.issuer), scopes=["api"], exempt=["/healthz"])

    def call(path="/jobs", **headers):
        out = {}
        body = b"".join(mw({"PATH_INFO": path, **headers}, lambda status, hdrs: out.update(status=status, headers=dict(hdrs))))
        return out["status"], out["headers"], body

    status, headers, body = call()
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"] == 'Bearer realm="tessera"'
    assert json.loads(body)["error"] == "invalid_token"
    status, headers, _ = call(HTTP_AUTHORIZATION="Bearer not-a-token.x.y")
    assert status.startswith("401") and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, _, body = call(HTTP_AUTHORIZATION=f"Bearer {cc.get_token()}")
    assert status == "200 OK" and body == b"ok" and seen["token"].client_id == cc.client_id
    assert call("/healthz")[0] == "200 OK", "exempt paths reach the app without a token"
    assert seen["token"] is None
    strict = WSGIMiddleware(app, Verifier(tessera.issuer, tessera.issuer), scopes=["introspect"])
    out = {}
    strict({"PATH_INFO": "/", "HTTP_AUTHORIZATION": f"Bearer {cc.get_token()}"}, lambda s, h: out.update(status=s, headers=dict(h)))
    assert out["status"] == "403 Forbidden" and 'scope="introspect"' in out["headers"]["WWW-Authenticate"]


def test_asgi_middleware(tessera, home):
    _, cc = sdk(tessera)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["tessera.token"].subject.encode()})

    mw = ASGIMiddleware(app, Verifier(tessera.issuer, tessera.issuer), scopes=["api"])

    async def call(headers):
        sent = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request"}

        await mw({"type": "http", "path": "/", "headers": headers}, receive, send)
        return sent

    sent = asyncio.run(call([]))
    assert sent[0]["status"] == 401
    sent = asyncio.run(call([(b"authorization", f"Bearer {cc.get_token()}".encode())]))
    assert sent[0]["status"] == 200 and sent[1]["body"] == cc.client_id.encode()


def test_token_times_follow_the_verifiers_clock(tessera, home):
    """exp and iat are judged by the clock the verifier is given (as its caches are), with the clock tolerance."""
    _, cc = sdk(tessera)
    token = cc.get_token()
    claims = jwt.decode(token, options={"verify_signature": False})

    def reason(at: float) -> str:
        try:
            Verifier(tessera.issuer, tessera.issuer, clock_tolerance=5.0, now=lambda: at).verify(token)
            return "accepted"
        except TesseraVerifyError as e:
            return e.reason

    assert reason(claims["iat"]) == "accepted"
    assert reason(claims["exp"] + 4) == "accepted", "within the tolerance after exp"
    assert reason(claims["exp"] + 5) == "expired"
    assert reason(claims["exp"] + 3600) == "expired"
    assert reason(claims["iat"] - 5) == "accepted", "within the tolerance before iat"
    assert reason(claims["iat"] - 6) == "claims", "issued in the future"

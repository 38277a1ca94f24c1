"""The Verifier subscribed to Tessera's security events (revocations="stream") against the real Tessera: tokens
refused once revoked or once their SDK key is disabled, unaffected tokens accepted, events missed while the
connection was down applied after it resumes, and no token accepted while the stream is down past the grace."""
from __future__ import annotations

import base64
import secrets
import time

import jwt
import pytest
import requests

from conftest import Server, _server_env, free_port
from tessera_client import ClientCredentials, DpopKey, TesseraOAuthError, TesseraVerifyError, Verifier

DEADLINE = 60.0  # generous: the suite shares two cores with other work; nothing here measures time


def sdk(tessera, **kw):
    key = tessera.sdk_key(**kw)
    return key, ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])


def own_owner(tessera, scopes: str = "api,quantum_tokens"):
    """A user and its API token, kept out of the session's shared owners (a test may suspend it)."""
    email = f"py-events-{secrets.token_hex(4)}@example.com"
    res = tessera.api("POST", "/admin/users", tessera.admin_token, json={"email": email, "name": "Receiver"})
    assert res.status_code == 201, res.text
    uid = res.json()["id"]
    token = tessera.cli("tokens", "create", "--user", uid, "--scopes", scopes, "--name", "events")["token"]
    return {"id": uid, "email": email, "token": token}


def receiver(tessera):
    """An SDK key holding scope events:read (made with an API token that holds it) and its credentials."""
    key = tessera.sdk_key(name="gateway", owner=own_owner(tessera, "api,events:read"), scopes=["events:read"])
    assert key["scopes"] == ["events:read"], key
    return ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], scope="events:read")


def subscribed(tessera, **kw) -> Verifier:
    """A verifier following the stream straight from the server (the test proxy buffers whole responses)."""
    kw.setdefault("events_auth", receiver(tessera))
    # Access tokens live 40 s in this session; a wide tolerance keeps a slow run's verdicts about revocation, not expiry.
    kw.setdefault("clock_tolerance", 600.0)
    return Verifier(tessera.issuer, tessera.issuer, revocations="stream", events_url=f"{tessera.server.url}/events/stream", warn=lambda m: None, **kw)


def outcome(v: Verifier, token: str) -> str:
    try:
        v.verify(token)
        return "accepted"
    except TesseraVerifyError as e:
        return e.reason


def until(v: Verifier, token: str, want: str) -> str:
    """Polls until the verdict on `token` is `want` (or the deadline passes); the last verdict."""
    end = time.time() + DEADLINE
    got = outcome(v, token)
    while got != want and time.time() < end:
        time.sleep(0.05)
        got = outcome(v, token)
    return got


def revoke(tessera, key, token: str) -> None:
    res = requests.post(f"{tessera.server.url}/oauth/revoke", data={"token": token}, auth=(key["client_id"], key["client_secret"]), timeout=10)
    assert res.status_code == 200, res.text


def test_a_revoked_token_and_a_disabled_keys_tokens_are_refused_unaffected_ones_accepted(tessera, home):
    key, cc = sdk(tessera)
    other_key, other = sdk(tessera)
    with subscribed(tessera) as v:
        doomed = cc.get_token()
        kept = other.get_token()
        assert v.revocation_stream.wait_live(DEADLINE)
        assert outcome(v, doomed) == "accepted" and outcome(v, kept) == "accepted"

        revoke(tessera, key, doomed)
        assert until(v, doomed, "revoked") == "revoked"
        cc.invalidate()
        fresh = cc.get_token()  # a new token of the same key is not affected by the jti
        assert outcome(v, fresh) == "accepted"
        assert outcome(v, kept) == "accepted"

        res = tessera.api("PATCH", f"/api/sdk-keys/{key['client_id']}", key["_owner"]["token"], json={"status": "disabled"})
        assert res.status_code == 200, res.text
        assert until(v, fresh, "revoked") == "revoked"
        assert outcome(v, kept) == "accepted", "another key's token stays accepted"
        assert v.revocation_stream.last_event_id is not None
    # The verifier without the stream still accepts what only the stream knows to be revoked (locally verified).
    assert outcome(Verifier(tessera.issuer, tessera.issuer, clock_tolerance=600.0), fresh) == "accepted"
    assert other_key["client_id"] != key["client_id"]


def test_events_missed_while_the_connection_was_down_apply_once_it_resumes_and_down_past_grace_fails_closed(tessera, home):
    _, other = sdk(tessera)
    key, cc = sdk(tessera, owner=own_owner(tessera))
    with subscribed(tessera, grace=1.0) as v:
        doomed, kept = cc.get_token(), other.get_token()
        assert v.revocation_stream.wait_live(DEADLINE)
        assert outcome(v, doomed) == "accepted"
        before = v.revocation_stream.last_event_id

        tessera.server.stop()  # drops the stream connection
        try:
            # Down past the grace: refused as unavailable, never accepted on local checks alone.
            assert until(v, kept, "unavailable") == "unavailable"
            # Meanwhile the owner is suspended (the CLI writes to the database): the key is disabled.
            tessera.cli("users", "suspend", "--user", key["_owner"]["id"])
        finally:
            tessera.server.start()
        assert v.revocation_stream.wait_live(DEADLINE)
        other.invalidate()
        assert until(v, other.get_token(), "accepted") == "accepted"
        assert outcome(v, doomed) == "revoked", "the event committed while the stream was down arrived after it resumed"
        assert v.revocation_stream.last_event_id != before


@pytest.mark.parametrize("nonce", ["off", "on"])
def test_a_dpop_bound_receiver_key_follows_the_stream_with_proofs(tessera, home, nonce):
    """The receiver's SDK key has dpop_bound_access_tokens: its token is DPoP-bound, so every connection to the stream
    carries a fresh proof of it (for the stream's URL, with the server's nonce when it asks for one)."""
    # A Tessera of its own whose issuer is the URL it is reached at (a proof names the public URL; the session's
    # proxy buffers whole responses, so the stream cannot go through it), on the same database.
    port = free_port()
    env = {**tessera.env, **_server_env(tessera.env["DATABASE_URL"], f"http://127.0.0.1:{port}"), "TESSERA_DPOP_NONCE": nonce}
    env["TESSERA_MASTER_KEY"], env["TESSERA_PEPPER"] = tessera.env["TESSERA_MASTER_KEY"], tessera.env["TESSERA_PEPPER"]
    server = Server(env, port)
    server.start()
    try:
        owner = own_owner(tessera, "api,events:read")
        rkey = tessera.sdk_key(name="dpop-gateway", owner=owner, scopes=["events:read"], dpop_bound_access_tokens=True)
        assert rkey["dpop_bound_access_tokens"] is True, rkey
        creds = dict(issuer=server.url, client_id=rkey["client_id"], client_secret=rkey["client_secret"], scope="events:read")
        with pytest.raises(TesseraOAuthError):
            ClientCredentials(**creds).get_token()  # the key gets no bearer token
        receiver_auth = ClientCredentials(**creds, dpop=DpopKey())
        receiver_token = receiver_auth.get_access_token()
        assert receiver_token.token_type == "DPoP"
        if nonce == "on":
            # The nonce the client holds has gone stale (as it does when the server's nonce window moves on): the
            # stream's first proof is refused with use_dpop_nonce and the next carries the new nonce.
            stale = requests.Response()
            stale.status_code, stale.headers["dpop-nonce"] = 200, "stale-nonce"
            receiver_auth.dpop.nonce_challenge(server.url, stale)
            refused = requests.get(f"{server.url}/events/stream", headers=receiver_auth.authorization("GET", f"{server.url}/events/stream"), timeout=10)
            assert refused.status_code == 401 and "use_dpop_nonce" in refused.headers.get("www-authenticate", ""), refused.headers
            receiver_auth.dpop.nonce_challenge(server.url, stale)

        key = tessera.sdk_key()
        cc = ClientCredentials(issuer=server.url, client_id=key["client_id"], client_secret=key["client_secret"])
        warnings: list = []
        with Verifier(server.url, server.url, revocations="stream", events_auth=receiver_auth, clock_tolerance=600.0, warn=warnings.append) as v:
            doomed = cc.get_token()
            assert v.revocation_stream.wait_live(DEADLINE), warnings
            assert warnings == [], "the stream connected at once (with the server's nonce when it asked)"
            assert receiver_auth.get_access_token() is receiver_token, "the receiver's token was kept, not renewed"
            assert outcome(v, doomed) == "accepted"
            res = requests.post(f"{server.url}/oauth/revoke", data={"token": doomed}, auth=(key["client_id"], key["client_secret"]), timeout=10)
            assert res.status_code == 200, res.text
            assert until(v, doomed, "revoked") == "revoked"
            cc.invalidate()
            assert outcome(v, cc.get_token()) == "accepted", "another token of the key is not affected"
    finally:
        server.stop()


def test_wrong_stream_credentials_fail_closed_or_fall_back_to_remote_checks(tessera, home):
    _, cc = sdk(tessera)
    token = cc.get_token()
    with subscribed(tessera, events_auth=lambda: "not-a-token", grace=0.5) as v:
        time.sleep(1.0)  # give the stream time to try (it never gets live): still refused, not accepted
        assert outcome(v, token) == "unavailable"
        assert not v.revocation_stream.is_live
        with pytest.raises(TesseraVerifyError) as e:
            v.verify(token)
        assert (e.value.code, e.value.status) == ("temporarily_unavailable", 503)
    before = tessera.proxy.count("/gateway/verify")
    with subscribed(tessera, events_auth=lambda: "not-a-token", when_down="remote") as v:
        got = v.verify(token)
        assert got.checked_remotely and got.client_id == cc.client_id
        assert tessera.proxy.count("/gateway/verify") > before
    # A token with the wrong scope cannot subscribe either.
    with subscribed(tessera, events_auth=cc) as v:
        time.sleep(1.0)
        assert outcome(v, token) == "unavailable" and not v.revocation_stream.is_live


def test_a_set_not_signed_by_tessera_is_not_applied(tessera, home):
    """The stream's SETs are verified: a verifier told a different issuer refuses them and never gets live."""
    _, cc = sdk(tessera)
    token = cc.get_token()
    key, revoked = sdk(tessera)
    revoke(tessera, key, revoked.get_token())  # at least one event is kept
    v = Verifier(
        tessera.issuer,
        tessera.issuer,
        revocations="stream",
        events_auth=receiver(tessera),
        events_url=f"{tessera.server.url}/events/stream",
        events_audience="someone-else",
        warn=lambda m: None,
    )
    try:
        # Their aud is the receiver, not "someone-else", so they fail.
        time.sleep(1.0)
        assert not v.revocation_stream.is_live and outcome(v, token) == "unavailable"
    finally:
        v.close()


def test_options_are_checked(tessera):
    with pytest.raises(Exception, match="events_auth"):
        Verifier(tessera.issuer, tessera.issuer, revocations="stream")
    with pytest.raises(Exception, match="when_down"):
        Verifier(tessera.issuer, tessera.issuer, revocations="stream", events_auth=lambda: "x", when_down="open")


# -- every claim of a SET is checked: a small issuer that publishes one key and serves a scripted stream ----------

REVOKED_EV = "urn:tessera:secevent:access-token-revoked"


class FakeIssuer:
    """Publishes one ES256 key at /.well-known/jwks.json and serves ``script(last_event_id)`` at /events/stream,
    keeping the connection open; records the Last-Event-ID of every connection."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import json
        import threading

        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        # Coordinates of exactly 32 bytes (RFC 7518 §6.2.1.2): PyJWT 2.6's to_jwk drops leading zero bytes,
        # which its own PyJWK then refuses (one key in about 140).
        numbers = self.key.public_key().public_numbers()
        coord = lambda n: base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()  # noqa: E731
        jwk = {"kty": "EC", "crv": "P-256", "x": coord(numbers.x), "y": coord(numbers.y)}
        jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}).encode()
        self.script = lambda last: ""
        self.last_ids: list = []
        self.closing = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # noqa: ANN002 - quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/.well-known/jwks.json":
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(jwks)))
                    self.end_headers()
                    self.wfile.write(jwks)
                    return
                if self.path != "/events/stream":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                last = self.headers.get("last-event-id")
                me.last_ids.append(last)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")  # as Tessera streams it: each write reaches the reader
                self.send_header("connection", "close")
                self.end_headers()
                try:
                    body = me.script(last).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                    self.wfile.flush()
                    while not me.closing.wait(0.2):
                        pass
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def access_token(self, jti: str, lifetime: int = 600) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": self.url, "sub": "u1", "client_id": "c1", "scope": "api", "jti": jti, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1", "typ": "at+jwt"})

    def set(self, sid: str, revokes: str, aud="gw-1", typ="secevent+jwt", key=None, **override) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": aud,
            "iat": now,
            "jti": sid,
            "sub_id": {"format": "jwt_id", "iss": self.url, "jti": revokes},
            "events": {REVOKED_EV: {"jti": revokes, "client_id": "c1", "exp": now + 600}},
        }
        for k, v in override.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": "k1", "typ": typ})


def _until(check, deadline: float = DEADLINE) -> bool:
    end = time.time() + deadline
    while not check():
        if time.time() > end:
            return False
        time.sleep(0.05)
    return True


BAD_SETS = {
    "wrong iss": dict(iss="https://elsewhere.invalid"),
    "wrong aud": dict(aud="gw-2"),
    "aud list without this receiver": dict(aud=["gw-2", "gw-3"]),
    "typ JWT": dict(typ="JWT"),
    "no iat": dict(iat=None),
    "no jti": dict(jti=None),
    "no events": dict(events=None),
    "another key": dict(key="other"),
    "control: every claim right": None,
}


@pytest.mark.parametrize("case", list(BAD_SETS))
def test_a_set_is_applied_only_when_every_claim_is_right(case):
    from cryptography.hazmat.primitives.asymmetric import ec

    bad = BAD_SETS[case]
    issuer = FakeIssuer()
    try:
        first = issuer.set("1", "jti-a")
        kw = dict(bad or {})
        if kw.get("key") == "other":
            kw["key"] = ec.generate_private_key(ec.SECP256R1())
        second = issuer.set("2", "jti-b", **kw)
        head, tail = 'event: receiver\ndata: {"aud":"gw-1"}\n\n', 'event: live\ndata: {"id":2}\n\n'
        issuer.script = lambda last: f"{head}id: 1\ndata: {first}\n\nid: 2\ndata: {second}\n\n{tail}" if last is None else f"{head}id: 2\ndata: {second}\n\n{tail}"
        a, b, c = (issuer.access_token(j) for j in ("jti-a", "jti-b", "jti-c"))
        with Verifier(issuer.url, issuer.url, revocations="stream", events_auth=lambda: "an-opaque-token", grace=60.0, warn=lambda m: None) as v:
            assert until(v, a, "revoked") == "revoked", "the good SET before it counts"
            if bad is None:
                assert until(v, b, "revoked") == "revoked"
                assert outcome(v, c) == "accepted"
                assert issuer.last_ids == [None]
            else:
                assert _until(lambda: "1" in issuer.last_ids), "reconnected resuming after the good SET, not the refused one"
                assert outcome(v, b) == "unavailable", "the token the refused SET names is not counted as revoked"
                assert outcome(v, c) == "unavailable", "and the verifier fails closed rather than trusting the stream"
                assert not v.revocation_stream.is_live and v.revocation_stream.last_event_id == "1"
    finally:
        issuer.close()


def test_a_pinned_audience_refuses_a_stream_addressed_to_another_receiver():
    issuer = FakeIssuer()
    try:
        one = issuer.set("1", "jti-a", aud="gw-other")
        issuer.script = lambda last: f'event: receiver\ndata: {{"aud":"gw-other"}}\n\nid: 1\ndata: {one}\n\nevent: live\ndata: {{"id":1}}\n\n'
        with Verifier(
            issuer.url, issuer.url, revocations="stream", events_auth=lambda: "an-opaque-token", events_audience="gw-1", grace=60.0, warn=lambda m: None
        ) as v:
            assert _until(lambda: len(issuer.last_ids) >= 2), "the verifier drops the stream and tries again"
            assert outcome(v, issuer.access_token("jti-a")) == "unavailable"
            assert v.revocation_stream.last_event_id is None
    finally:
        issuer.close()


def test_revoked_jtis_are_refused_until_their_exp_kept_no_longer_and_never_shortened():
    """The denylist keeps a revoked jti until its token could not be accepted anyway (exp plus a minute of skew, at
    most the longest token lifetime), then forgets it; the verifier's clock is moved by hand."""
    issuer = FakeIssuer()
    offset = [0.0]
    try:
        s = int(time.time())

        def revoking(sid: str, jti: str, exp):
            body = {"jti": jti, "client_id": "c1", **({} if exp is None else {"exp": exp})}
            return issuer.set(sid, jti, events={REVOKED_EV: body})

        sets = [
            revoking("1", "jti-a", s + 120),
            revoking("2", "jti-b", s + 3600),
            revoking("3", "jti-c", None),  # no exp: kept for the longest token lifetime
            revoking("4", "jti-d", s + 3600),
            revoking("5", "jti-d", s + 60),  # an earlier exp the second time: the longer record holds
            revoking("6", "jti-e", s + 10 * 86_400),  # beyond any token's lifetime: kept only that long
        ]
        body = 'event: receiver\ndata: {"aud":"gw-1"}\n\n' + "".join(f"id: {i + 1}\ndata: {x}\n\n" for i, x in enumerate(sets))
        body += 'event: live\ndata: {"id":6}\n\n'
        issuer.script = lambda last: body
        tokens = [issuer.access_token(j, lifetime=3 * 3600) for j in ("jti-a", "jti-b", "jti-c", "jti-d", "jti-e", "jti-z")]
        with Verifier(
            issuer.url,
            issuer.url,
            revocations="stream",
            events_auth=lambda: "an-opaque-token",
            grace=86_400.0,
            max_token_lifetime=5000.0,
            now=lambda: time.time() + offset[0],
            warn=lambda m: None,
        ) as v:
            stream = v.revocation_stream
            assert stream.wait_live(DEADLINE)

            def at(seconds: float):
                offset[0] = seconds
                return [outcome(v, t) for t in tokens]

            R, A = "revoked", "accepted"
            assert at(0) == [R, R, R, R, R, A]
            assert stream.denylist_size == 5
            assert at(100) == [R, R, R, R, R, A], "within a minute past exp: still refused"
            assert stream.denylist_size == 5
            assert _until(lambda: (at(200), stream.denylist_size == 4)[1]), "jti-a forgotten"
            assert at(200) == [A, R, R, R, R, A], "jti-d keeps the longer of its two records"
            assert _until(lambda: (at(3700), stream.denylist_size == 2)[1]), "jti-b and jti-d forgotten after their exp"
            assert at(3700) == [A, A, R, A, R, A], "no exp, or one beyond any lifetime: kept for the longest lifetime"
            assert _until(lambda: (at(5100), stream.denylist_size == 0)[1]), "every record gone after the longest lifetime"
            assert stream.is_live
    finally:
        issuer.close()

"""The Python verifier and its middlewares with DPoP-bound tokens (RFC 9449 section 7), against a real Tessera:
a bound token only with a fresh proof for the request, signed by the bound key, once."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tessera_client import ASGIMiddleware, ClientCredentials, DpopKey, DpopRequest, TesseraError, TesseraVerifyError, Verifier, WSGIMiddleware

API = "https://api.example/jobs"


def _reason(fn) -> str:
    try:
        fn()
    except TesseraVerifyError as e:
        assert e.status == 401
        return e.reason
    return "accepted"


def _tokens(tessera):
    key = tessera.sdk_key("py-dpop-verify", scopes=["api"])
    dpop = DpopKey()
    bound = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], dpop=dpop).get_access_token()
    assert bound.token_type == "DPoP"
    plain = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"]).get_token()
    return key, dpop, bound.access_token, plain


def test_the_verifier_takes_a_bound_token_only_with_a_fresh_proof_for_the_request(tessera, home):
    key, dpop, at, plain = _tokens(tessera)
    v = Verifier(tessera.issuer, tessera.issuer)
    first = DpopRequest(dpop.proof("GET", API, at), "GET", f"{API}?page=2")
    assert v.verify(at, dpop=first).client_id == key["client_id"]

    other_key = DpopKey()
    refused = {
        "no proof": lambda: v.verify(at),
        "the same proof again": lambda: v.verify(at, dpop=first),
        "another URL": lambda: v.verify(at, dpop=DpopRequest(dpop.proof("GET", "https://api.example/other", at), "GET", API)),
        "another method": lambda: v.verify(at, dpop=DpopRequest(dpop.proof("POST", API, at), "GET", API)),
        "another access token": lambda: v.verify(at, dpop=DpopRequest(dpop.proof("GET", API, plain), "GET", API)),
        "no ath": lambda: v.verify(at, dpop=DpopRequest(dpop.proof("GET", API), "GET", API)),
        "another key": lambda: v.verify(at, dpop=DpopRequest(other_key.proof("GET", API, at), "GET", API)),
        "an unbound token with a proof": lambda: v.verify(plain, dpop=DpopRequest(dpop.proof("GET", API, plain), "GET", API)),
        "the bound token as Bearer": lambda: v.verify_request({"Authorization": f"Bearer {at}"}),
        "the DPoP scheme without a proof": lambda: v.verify_request({"Authorization": f"DPoP {at}"}, method="GET", url=API),
    }
    for what, call in refused.items():
        assert _reason(call) == "dpop", what
    assert v.verify(plain).client_id == key["client_id"], "an unbound token stays a bearer token"
    headers = {"Authorization": f"DPoP {at}", "DPoP": dpop.proof("GET", API, at)}
    assert v.verify_request(headers, method="GET", url=API).client_id == key["client_id"]


def test_the_middlewares_pass_the_request_method_and_url_and_answer_dpop_challenges(tessera, home):
    key, dpop, at, _ = _tokens(tessera)
    v = Verifier(tessera.issuer, tessera.issuer)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["tessera.token"].client_id.encode()]

    mw = WSGIMiddleware(app, v, scopes=["api"])

    def call(**environ):
        out = {}
        base = {"PATH_INFO": "/jobs", "REQUEST_METHOD": "GET", "HTTP_HOST": "api.example", "wsgi.url_scheme": "https"}
        body = b"".join(mw({**base, **environ}, lambda status, hdrs: out.update(status=status, headers=dict(hdrs))))
        return out["status"], out["headers"], body

    status, _, body = call(HTTP_AUTHORIZATION=f"DPoP {at}", HTTP_DPOP=dpop.proof("GET", API, at))
    assert status == "200 OK" and body == key["client_id"].encode()
    status, headers, body = call(HTTP_AUTHORIZATION=f"Bearer {at}")
    assert status.startswith("401") and headers["WWW-Authenticate"].startswith('DPoP realm="tessera", error="invalid_token"')
    status, _, body = call(HTTP_AUTHORIZATION=f"DPoP {at}", HTTP_DPOP=dpop.proof("GET", "https://api.example/other", at))
    assert status.startswith("401") and "another URL" in json.loads(body)["message"]

    async def asgi_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["tessera.token"].client_id.encode()})

    amw = ASGIMiddleware(asgi_app, v, scopes=["api"])

    async def acall(proof_url):
        sent = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request"}

        headers = [(b"host", b"api.example"), (b"authorization", f"DPoP {at}".encode()), (b"dpop", dpop.proof("POST", proof_url, at).encode())]
        await amw({"type": "http", "method": "POST", "scheme": "https", "path": "/jobs", "headers": headers}, receive, send)
        return sent

    sent = asyncio.run(acall(API))
    assert sent[0]["status"] == 200 and sent[1]["body"] == key["client_id"].encode()
    sent = asyncio.run(acall("https://api.example/other"))
    assert sent[0]["status"] == 401


def test_the_replay_memory_forgets_the_oldest_tenth_at_once_when_full_and_expired_proofs_first(tessera, home):
    private = ec.generate_private_key(ec.SECP256R1())
    dpop = DpopKey(private)
    key = tessera.sdk_key("py-dpop-memory", scopes=["api"])
    at = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], dpop=dpop).get_access_token()
    assert at.token_type == "DPoP"
    token = at.access_token
    ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    clock = [time.time()]

    def proof(jti: str) -> DpopRequest:
        claims = {"jti": jti, "iat": int(clock[0]), "htm": "GET", "htu": API, "ath": ath}
        return DpopRequest(jwt.encode(claims, private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": dpop.public_jwk}), "GET", API)

    def verifier() -> Verifier:
        # 20 remembered: the tenth is 2; a proof's memory lasts dpop_max_age + 2 * tolerance + 1 = 13 s (of this clock).
        return Verifier(tessera.issuer, tessera.issuer, now=lambda: clock[0], clock_tolerance=1.0, dpop_max_age=10.0, dpop_max_remembered=20)

    def outcome(v: Verifier, request: DpopRequest) -> str:
        try:
            v.verify(token, dpop=request)
            return "accepted"
        except TesseraVerifyError as e:
            return f"{e.reason}: {e}"

    replay = "dpop: the DPoP proof was used before"
    v = verifier()
    p = [proof(f"p{i}") for i in range(21)]
    assert outcome(v, p[0]) == "accepted"
    assert outcome(v, p[0]).startswith(replay), "a replay is refused while remembered"
    for i in range(1, 20):
        assert outcome(v, p[i]) == "accepted", i
    assert outcome(v, p[0]).startswith(replay), "the memory holds dpop_max_remembered proofs: p0 with 19 accepted after it"

    assert outcome(v, p[20]) == "accepted", "a proof beyond a full memory of live proofs"
    for i in range(2, 21):
        assert outcome(v, p[i]).startswith(replay), f"p{i} stays (p2: 18 accepted since, dpop_max_remembered - the tenth)"
    assert outcome(v, p[1]) == "accepted", "the oldest tenth (p0, p1) was forgotten at once: its replay is no longer seen"
    assert outcome(v, p[1]).startswith(replay), "and, accepted again, it is remembered again"
    assert outcome(v, p[0]) == "accepted", "p0 was forgotten with p1"

    # Past the memory's lifetime every proof held has expired: the whole expired prefix goes, not a tenth of it.
    clock[0] += 14
    r = [proof(f"r{i}") for i in range(20)]
    for i in range(20):
        assert outcome(v, r[i]) == "accepted", f"r{i} into a memory of expired proofs"
    for i in range(20):
        assert outcome(v, r[i]).startswith(replay), f"r{i} is remembered: only expired proofs made room"
    assert outcome(v, p[5]).startswith("dpop: the DPoP proof is too old"), "an expired proof is refused on its iat"

    # A jti seen again after its entry expired (a new proof that reuses it) moves to the end of the memory.
    clock[0] = time.time()
    w = verifier()
    assert outcome(w, proof("x")) == "accepted"
    for i in range(5):
        assert outcome(w, proof(f"b{i}")) == "accepted"
    clock[0] += 14
    x = proof("x")
    assert outcome(w, x) == "accepted", "the jti x again, in a proof made after its entry expired"
    for i in range(15):
        assert outcome(w, proof(f"c{i}")) == "accepted", i
    assert outcome(w, x).startswith(replay), "x was moved to the end: the expired b0..b4 before it went, not x"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_dpop_max_remembered_must_be_a_positive_integer(bad):
    with pytest.raises(TesseraError, match="dpop_max_remembered must be a positive integer"):
        Verifier("https://tessera.example", "x", dpop_max_remembered=bad)


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of its own on a free loopback port, nothing persisted (skipped when redis-server is absent)."""
    import os
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server") or next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)), None)
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    from conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.time() > end or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


def test_verifier_processes_sharing_redis_refuse_a_proof_replayed_at_another_one(tessera, home, redis_url):
    import redis

    from tessera_client import redis_proof_replay_store

    url, server = redis_url
    key, dpop, at, _ = _tokens(tessera)
    # Two gateway processes: each its own verifier and Redis connection, one Redis between them.
    conns = [redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) for _ in range(2)]
    a, b = (Verifier(tessera.issuer, tessera.issuer, dpop_replay=redis_proof_replay_store(c)) for c in conns)
    alone = Verifier(tessera.issuer, tessera.issuer)

    first = DpopRequest(dpop.proof("GET", API, at), "GET", API)
    assert a.verify(at, dpop=first).client_id == key["client_id"], "accepted where first presented"
    assert _reason(lambda: b.verify(at, dpop=first)) == "dpop", "the same proof at the other process is refused"
    assert _reason(lambda: a.verify(at, dpop=first)) == "dpop", "and again at the first"
    assert alone.verify(at, dpop=first).client_id == key["client_id"], "a verifier without the shared record cannot know"
    second = DpopRequest(dpop.proof("GET", API, at), "GET", API)
    assert b.verify(at, dpop=second).client_id == key["client_id"], "a fresh proof is accepted at either"
    assert _reason(lambda: a.verify(at, dpop=second)) == "dpop"
    records = conns[0].keys("tessera:dpop-proof:*")
    assert len(records) == 2, "one record per proof, under the same prefix as the TypeScript verifier's"
    assert all(conns[0].pttl(r) > 0 for r in records), "each record expires"

    server.kill()
    server.wait()
    with pytest.raises(TesseraVerifyError) as down:
        a.verify(at, dpop=DpopRequest(dpop.proof("GET", API, at), "GET", API))
    assert down.value.reason == "unavailable" and down.value.status == 503, "Redis unreachable: refused, never accepted unchecked"

"""ClientCredentials against the real Tessera: where the key comes from, caching and renewal, single flight
across threads, typed refusals, retries across a restart, organization discovery, requests/httpx auth."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import httpx
import jwt
import pytest
import requests

import subprocess

from conftest import HERE, NODE, ROOT, RecordingSleep, Server, _server_env, free_port
from tessera_client import (
    AccessToken,
    Branding,
    ClientCredentials,
    ClientCredentialsAuth,
    HttpxAuth,
    RetryPolicy,
    TesseraNetworkError,
    TesseraOAuthError,
    save_account,
)

TOKEN = "/oauth/token"
DISCOVERY = "/.well-known/oauth-authorization-server"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_token_from_a_key_file_given_as_argument_and_in_TESSERA_SDK_KEY(tessera, home, monkeypatch):
    key = tessera.sdk_key()
    path = home / "key.json"
    path.write_text(json.dumps({"client_id": key["client_id"], "client_secret": key["client_secret"], "issuer": tessera.issuer}))
    cc = ClientCredentials(key_file=str(path))
    assert cc.issuer == tessera.issuer, "the issuer comes from the key file"
    assert cc.source == "key_file"
    assert claims(cc.get_token())["client_id"] == key["client_id"]

    monkeypatch.setenv("TESSERA_SDK_KEY", str(path))
    cc2 = ClientCredentials()
    assert claims(cc2.get_token())["client_id"] == key["client_id"]


def test_token_from_environment_variables(tessera, home, monkeypatch):
    key = tessera.sdk_key()
    monkeypatch.setenv("TESSERA_URL", tessera.issuer)
    monkeypatch.setenv("TESSERA_CLIENT_ID", key["client_id"])
    monkeypatch.setenv("TESSERA_CLIENT_SECRET", key["client_secret"])
    cc = ClientCredentials(scope="api")
    assert cc.source == "environment"
    c = claims(cc.get_token())
    assert c["client_id"] == key["client_id"]
    assert c["scope"] == "api"
    assert c["iss"] == tessera.issuer


def test_token_from_a_saved_account_named_or_default(tessera, home, monkeypatch):
    k1, k2 = tessera.sdk_key("one"), tessera.sdk_key("two")
    save_account("one", issuer=tessera.issuer, client_id=k1["client_id"], client_secret=k1["client_secret"])
    save_account("two", issuer=tessera.issuer, client_id=k2["client_id"], client_secret=k2["client_secret"], set_as_default=True)
    assert (home / ".tessera" / "accounts.json").exists()
    assert claims(ClientCredentials().get_token())["client_id"] == k2["client_id"], "the default account"
    assert claims(ClientCredentials(account="one").get_token())["client_id"] == k1["client_id"], "the named account"
    monkeypatch.setenv("TESSERA_ACCOUNT", "one")
    assert claims(ClientCredentials().get_token())["client_id"] == k1["client_id"], "TESSERA_ACCOUNT"


def test_resolution_order_first_match_wins(tessera, home, monkeypatch):
    a, b, c, d = (tessera.sdk_key(n) for n in "abcd")
    path = home / "key.json"
    path.write_text(json.dumps({"client_id": b["client_id"], "client_secret": b["client_secret"]}))
    save_account("d", issuer=tessera.issuer, client_id=d["client_id"], client_secret=d["client_secret"])
    monkeypatch.setenv("TESSERA_URL", tessera.issuer)
    monkeypatch.setenv("TESSERA_SDK_KEY", str(path))
    monkeypatch.setenv("TESSERA_CLIENT_ID", c["client_id"])
    monkeypatch.setenv("TESSERA_CLIENT_SECRET", c["client_secret"])
    assert ClientCredentials(client_id=a["client_id"], client_secret=a["client_secret"]).client_id == a["client_id"]
    assert ClientCredentials().client_id == b["client_id"], "key file before the variables"
    monkeypatch.delenv("TESSERA_SDK_KEY")
    assert ClientCredentials().client_id == c["client_id"], "variables before the saved account"
    monkeypatch.delenv("TESSERA_CLIENT_ID")
    monkeypatch.delenv("TESSERA_CLIENT_SECRET")
    cc = ClientCredentials()
    assert (cc.client_id, cc.source) == (d["client_id"], "account")
    assert claims(cc.get_token())["client_id"] == d["client_id"]


def test_renewed_30_s_before_expiry_with_a_short_server_ttl(tessera, home):
    key = tessera.sdk_key()
    clock = [time.time()]
    cc = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], now=lambda: clock[0])
    before = tessera.proxy.count(TOKEN)
    first = cc.get_access_token()
    assert first.expires_in == 40, "the server's TESSERA_ACCESS_TOKEN_TTL"
    clock[0] += 9  # 31 s left
    assert cc.get_token() == first.access_token, "cached while more than 30 s remain"
    assert tessera.proxy.count(TOKEN) == before + 1
    clock[0] += 2  # 29 s left
    renewed = cc.get_token()
    assert renewed != first.access_token
    assert claims(renewed)["jti"] != claims(first.access_token)["jti"]
    assert tessera.proxy.count(TOKEN) == before + 2, "renewed once"
    assert cc.get_token() == renewed


def test_20_threads_asking_at_once_make_one_token_request(tessera, home):
    key = tessera.sdk_key()
    cc = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
    tokens_before, discovery_before = tessera.proxy.count(TOKEN), tessera.proxy.count(DISCOVERY)
    barrier = threading.Barrier(20)
    results: list = []

    def ask() -> None:
        barrier.wait()
        results.append(cc.get_token())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 20
    assert len(set(results)) == 1, "every thread got the same token"
    assert tessera.proxy.count(TOKEN) - tokens_before == 1, "Tessera saw one token request"
    assert tessera.proxy.count(DISCOVERY) - discovery_before == 1, "and one discovery request"


def test_revoked_sdk_key_raises_the_typed_error_at_once_without_retries(tessera, home):
    key = tessera.sdk_key()
    sleep = RecordingSleep()
    cc = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], sleep=sleep)
    assert cc.get_token()
    res = tessera.api("DELETE", f"/api/sdk-keys/{key['client_id']}", key["_owner"]["token"])
    assert res.status_code in (200, 204), res.text
    cc.invalidate()
    before = tessera.proxy.count(TOKEN)
    with pytest.raises(TesseraOAuthError) as exc:
        cc.get_token()
    assert exc.value.code == "invalid_client"
    assert exc.value.status == 401
    assert exc.value.retryable is False
    assert tessera.proxy.count(TOKEN) == before + 1, "one request: no retry"
    assert sleep.delays == [], "never slept"

    # Threads waiting on the same request share its failure.
    errors: list = []
    ths = [threading.Thread(target=lambda: errors.append(_catch(cc.get_token))) for _ in range(5)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    assert all(isinstance(e, TesseraOAuthError) and e.code == "invalid_client" for e in errors)


def _catch(fn):
    try:
        fn()
    except Exception as e:  # returned for the assertion
        return e
    return None


def test_503_and_429_are_retried_with_backoff_honouring_retry_after(tessera, home):
    key = tessera.sdk_key()
    sleep = RecordingSleep()
    cc = ClientCredentials(
        issuer=tessera.issuer,
        client_id=key["client_id"],
        client_secret=key["client_secret"],
        sleep=sleep,
        random=lambda: 0.5,
        retry=RetryPolicy(max_retries=3, base_delay=0.1),
    )
    tokens, discovery = tessera.proxy.count(TOKEN), tessera.proxy.count(DISCOVERY)
    tessera.proxy.fail_next(DISCOVERY, 1, 503, "0")
    tessera.proxy.fail_next(TOKEN, 2, 429, "2")
    assert claims(cc.get_token())["client_id"] == key["client_id"]
    assert tessera.proxy.count(DISCOVERY) - discovery == 2, "discovery retried once"
    assert tessera.proxy.count(TOKEN) - tokens == 3, "the token request retried twice"
    assert sleep.delays == [0.05, 2.0, 2.0], "jittered backoff, then at least Retry-After (2 s)"

    cc.invalidate()
    sleep.delays.clear()
    tessera.proxy.fail_next(TOKEN, 10, 503, "0")
    with pytest.raises(TesseraOAuthError) as exc:
        cc.get_token()
    assert (exc.value.code, exc.value.status, exc.value.retryable) == ("temporarily_unavailable", 503, True)
    assert tessera.proxy.count(TOKEN) - tokens == 3 + 4, "the first attempt and three retries"
    assert sleep.delays == [0.05, 0.1, 0.2], "exponential backoff"
    tessera.proxy.fail_next(TOKEN, 0)


def test_tessera_restarting_mid_request_is_retried_and_recovers(tessera, home):
    port = free_port()
    env = {**tessera.env, **_server_env(tessera.env["DATABASE_URL"], f"http://127.0.0.1:{port}")}
    env["TESSERA_MASTER_KEY"], env["TESSERA_PEPPER"] = tessera.env["TESSERA_MASTER_KEY"], tessera.env["TESSERA_PEPPER"]
    env["TESSERA_DB_STATEMENT_TIMEOUT_MS"] = "0"  # the token request waits on the lock below until Tessera dies
    server = Server(env, port)
    server.start()
    lock = None
    try:
        key = tessera.sdk_key()
        sleep = RecordingSleep(real=True)
        cc = ClientCredentials(
            issuer=server.url,
            client_id=key["client_id"],
            client_secret=key["client_secret"],
            retry=RetryPolicy(max_retries=120, base_delay=0.2, max_delay=0.5),
            random=lambda: 1.0,
            sleep=sleep,
        )
        cc.metadata()  # discovery done; the key itself is new to this Tessera, which reads it on first use
        # Hold the SDK-key table so that Tessera is inside the token request when it goes down.
        lock = subprocess.Popen(
            [NODE, os.path.join(HERE, "pg_lock.mjs"), "sdk_keys"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": env["DATABASE_URL"]},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert lock.stdout.readline().strip() == "locked"
        outcome: list = []
        th = threading.Thread(target=lambda: outcome.append(_catch(cc.get_token) or cc.get_access_token().access_token))
        th.start()
        assert lock.stdout.readline().strip() == "waiting", "Tessera is inside the token request, waiting for the key"
        server.kill()  # Tessera dies mid-request: the client's connection is cut
        lock.stdin.close()
        lock.wait(30)
        while not sleep.delays and th.is_alive():  # the client is retrying
            time.sleep(0.05)
        server.start()
        th.join(90)
        assert not th.is_alive()
        assert isinstance(outcome[0], str), outcome
        assert claims(outcome[0])["client_id"] == key["client_id"]
        assert len(sleep.delays) >= 1, "retried while Tessera was down"
    finally:
        if lock and lock.poll() is None:
            lock.kill()
        server.stop()


def test_an_unreachable_tessera_ends_in_a_network_error_after_the_retries(home):
    sleep = RecordingSleep()
    cc = ClientCredentials(issuer=f"http://127.0.0.1:{free_port()}", client_id="s_x", client_secret="y", sleep=sleep, random=lambda: 0.5)
    with pytest.raises(TesseraNetworkError, match="cannot reach http://127.0.0.1"):
        cc.get_token()
    assert sleep.delays == [0.1, 0.2, 0.4], "three retries, exponential backoff"


def test_organization_id_explicit_environment_and_discovered(tessera, home, monkeypatch):
    key = tessera.sdk_key()
    base = dict(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
    assert ClientCredentials(organization_id="org-x", **base).organization_id() == "org-x"
    monkeypatch.setenv("TESSERA_ORGANIZATION_ID", "org-env")
    assert ClientCredentials(**base).organization_id() == "org-env"
    monkeypatch.delenv("TESSERA_ORGANIZATION_ID")
    res = tessera.api("POST", "/admin/organizations", json={"name": "py-org", "owner_id": key["_owner"]["id"]})
    assert res.status_code == 201, res.text
    org = res.json()["id"]
    assert ClientCredentials(**base).organization_id() == org, "discovered through /api/users/me/organizations"
    bound = tessera.sdk_key("bound", owner=key["_owner"], organization_id=org)
    cc = ClientCredentials(issuer=tessera.issuer, client_id=bound["client_id"], client_secret=bound["client_secret"])
    assert cc.organization_id() == org, "the org_id the key's tokens carry"


def test_requests_auth_adds_the_token_and_renews_after_invalid_token(tessera, home):
    key = tessera.sdk_key()
    cc = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
    auth = ClientCredentialsAuth(cc)
    res = requests.get(f"{tessera.issuer}/api/users/me", auth=auth, timeout=10)
    assert res.status_code == 200
    assert res.json()["credential"]["kind"] == "client"
    # A token Tessera no longer accepts (as after a signing-key revocation): renewed once, replayed.
    cc._cached = AccessToken("eyJhbGciOiJFZERTQSJ9.e30.c2ln", "Bearer", "", 40, time.time() + 40)
    res = requests.get(f"{tessera.issuer}/api/users/me", auth=auth, timeout=10)
    assert res.status_code == 200
    assert len(res.history) == 1 and res.history[0].status_code == 401
    with requests.Session() as s:
        s.auth = ClientCredentialsAuth(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
        assert s.get(f"{tessera.issuer}/api/users/me", timeout=10).status_code == 200


def test_httpx_auth_sync_and_async(tessera, home):
    key = tessera.sdk_key()
    cc = ClientCredentials(issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
    with httpx.Client(auth=HttpxAuth(cc)) as client:
        res = client.get(f"{tessera.issuer}/api/users/me")
        assert res.status_code == 200
        assert res.json()["credential"]["kind"] == "client"

    async def run() -> int:
        async with httpx.AsyncClient(auth=HttpxAuth(cc)) as client:
            cc._cached = AccessToken("eyJhbGciOiJFZERTQSJ9.e30.c2ln", "Bearer", "", 40, time.time() + 40)
            r = await client.get(f"{tessera.issuer}/api/users/me")
            return r.status_code

    assert asyncio.run(run()) == 200, "async, renewed after invalid_token"


def test_branding_changes_variables_default_issuer_and_accounts_file(tessera, home, monkeypatch):
    key = tessera.sdk_key()
    brand = Branding(env_prefix="QPLAT", default_issuer=tessera.issuer, accounts_file="~/.qplat/accounts.json", product="QPlat")
    monkeypatch.setenv("QPLAT_CLIENT_ID", key["client_id"])
    monkeypatch.setenv("QPLAT_CLIENT_SECRET", key["client_secret"])
    cc = ClientCredentials(branding=brand)
    assert cc.issuer == tessera.issuer, "the branding's default issuer"
    assert claims(cc.get_token())["client_id"] == key["client_id"]
    monkeypatch.delenv("QPLAT_CLIENT_ID")
    monkeypatch.delenv("QPLAT_CLIENT_SECRET")
    save_account("q", client_id=key["client_id"], client_secret=key["client_secret"], branding=brand)
    assert (home / ".qplat" / "accounts.json").exists()
    assert not (home / ".tessera").exists()
    assert ClientCredentials(branding=brand).source == "account"

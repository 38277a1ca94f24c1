"""The Verifier subscribed to Tessera's security events (revocations="stream") against the real Tessera: tokens
refused once revoked or once their SDK key is disabled, unaffected tokens accepted, events missed while the
connection was down applied after it resumes, and no token accepted while the stream is down past the grace."""
from __future__ import annotations

import secrets
import time

import pytest
import requests

from tessera_client import ClientCredentials, TesseraVerifyError, Verifier

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

"""Proof of possession against the real server: a key pair made here and registered through the API
(private_key_jwt: no secret exists anywhere), DPoP-bound tokens used with proofs, replay refused."""
from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest
import requests

from tessera_client import ClientCredentials, ClientCredentialsAuth, DpopKey, HttpxAuth, PrivateKeyJwt, TesseraConfigError, TesseraOAuthError


def test_private_key_jwt_registration_and_dpop_bound_tokens(tessera):
    owner = tessera.owner()
    auth, client_id = PrivateKeyJwt.register(
        issuer=tessera.issuer, api_token=owner["token"], name="py-pkjwt", scopes=["api"], dpop_bound_access_tokens=True
    )
    try:
        listed = tessera.api("GET", f"/api/sdk-keys/{client_id}", owner["token"]).json()
        assert listed["token_endpoint_auth_method"] == "private_key_jwt"
        assert "d" not in listed["jwk"]

        # The key is DPoP-bound: without a DPoP key the client gets nothing.
        with pytest.raises(TesseraOAuthError) as err:
            ClientCredentials(issuer=tessera.issuer, private_key_jwt=auth).get_token()
        assert err.value.code == "invalid_request"

        dpop = DpopKey()
        restored = PrivateKeyJwt(client_id, auth.private_pem())
        cc = ClientCredentials(issuer=tessera.issuer, private_key_jwt=restored, dpop=dpop)
        token = cc.get_access_token()
        assert token.token_type == "DPoP"
        assert jwt.decode(token.access_token, options={"verify_signature": False})["cnf"] == {"jkt": dpop.thumbprint()}

        session = requests.Session()
        session.auth = ClientCredentialsAuth(cc)
        for path in ("/api/users/me", "/gateway/verify"):
            assert session.get(f"{tessera.issuer}{path}", timeout=10).status_code == 200, path

        # A replayed proof and bearer use are refused.
        proof = dpop.proof("GET", f"{tessera.issuer}/api/users/me", token.access_token)
        headers = {"authorization": f"DPoP {token.access_token}", "dpop": proof}
        assert requests.get(f"{tessera.issuer}/api/users/me", headers=headers, timeout=10).status_code == 200
        replay = requests.get(f"{tessera.issuer}/api/users/me", headers=headers, timeout=10)
        assert replay.status_code == 401 and replay.json()["error"] == "invalid_dpop_proof"
        bearer = requests.get(f"{tessera.issuer}/api/users/me", headers={"authorization": f"Bearer {token.access_token}"}, timeout=10)
        assert bearer.status_code == 401

        # A replayed client assertion is invalid_client.
        endpoint = f"{tessera.issuer}/oauth/token"
        form = {"grant_type": "client_credentials"}
        restored.authenticate(form, endpoint)
        first = requests.post(endpoint, data=form, headers={"DPoP": dpop.proof("POST", endpoint)}, timeout=10)
        assert first.status_code == 200, first.text
        again = requests.post(endpoint, data=form, headers={"DPoP": dpop.proof("POST", endpoint)}, timeout=10)
        assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    finally:
        tessera.api("DELETE", f"/api/sdk-keys/{client_id}", owner["token"])


def test_dpop_bound_key_discovers_its_organization_and_retries_with_new_proofs(tessera):
    owner = tessera.owner()
    # Two organizations: the key's tokens carry no org_id, so the client asks /api/users/me/organizations.
    orgs = []
    for name in ("py-dpop-a", "py-dpop-b"):
        res = tessera.api("POST", "/admin/organizations", json={"name": name, "owner_id": owner["id"]})
        assert res.status_code == 201, res.text
        orgs.append(res.json()["id"])
    auth, client_id = PrivateKeyJwt.register(
        issuer=tessera.issuer, api_token=owner["token"], name="py-dpop-org", scopes=["api"], dpop_bound_access_tokens=True
    )
    try:
        warnings = []
        dpop = DpopKey()
        cc = ClientCredentials(issuer=tessera.issuer, private_key_jwt=auth, dpop=dpop, env={}, sleep=lambda s: None, warn=warnings.append)
        # Tessera answers, the answer is lost on the way back: the proof and the assertion are spent.
        tessera.proxy.lost.clear()
        tessera.proxy.lose_next("/oauth/token", 1)
        tessera.proxy.lose_next("/api/users/me/organizations", 1)
        assert cc.organization_id() in orgs
        assert [(x["path"], x["status"]) for x in tessera.proxy.lost] == [("/oauth/token", 200), ("/api/users/me/organizations", 200)]
        assert len(warnings) == 1 and "2 organizations" in warnings[0]
        assert cc.get_access_token().token_type == "DPoP"

        # headers() for any HTTP client: a DPoP-bound token needs the request to make its proof for.
        url = f"{tessera.issuer}/api/users/me"
        with pytest.raises(TesseraConfigError):
            cc.headers()
        headers = cc.headers("GET", url)
        assert headers["Authorization"].startswith("DPoP ")
        assert requests.get(url, headers=headers, timeout=10).status_code == 200
        assert requests.get(url, headers=headers, timeout=10).status_code == 401, "sent again, the proof is a replay"

        # httpx, sync and async: a proof per request.
        with httpx.Client(auth=HttpxAuth(cc)) as client:
            assert [client.get(url).status_code for _ in range(2)] == [200, 200]

        async def run_async():
            async with httpx.AsyncClient(auth=HttpxAuth(cc)) as client:
                return [(await client.get(url)).status_code for _ in range(2)]

        assert asyncio.run(run_async()) == [200, 200]
    finally:
        tessera.api("DELETE", f"/api/sdk-keys/{client_id}", owner["token"])

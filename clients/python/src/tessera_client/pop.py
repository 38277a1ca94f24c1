"""Proof of possession: DPoP (RFC 9449) proofs and private_key_jwt (RFC 7523) client assertions.

Key pairs are made here, on the developer's machine; only public halves are ever sent."""
from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._http import normalise_issuer
from .errors import TesseraOAuthError

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(private_key: ec.EllipticCurvePrivateKey) -> Dict[str, str]:
    numbers = private_key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64u(numbers.x.to_bytes(32, "big")),
        "y": _b64u(numbers.y.to_bytes(32, "big")),
    }


def _origin(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


class DpopKey:
    """An ES256 DPoP key: proofs for token and resource requests, and the server nonces (``DPoP-Nonce``)
    remembered per origin."""

    def __init__(self, private_key: Optional[ec.EllipticCurvePrivateKey] = None) -> None:
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())
        self.public_jwk = _public_jwk(self._key)
        self._nonces: Dict[str, str] = {}

    def thumbprint(self) -> str:
        """RFC 7638 SHA-256 thumbprint: the ``cnf.jkt`` of tokens bound to this key."""
        canonical = json.dumps({k: self.public_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
        return _b64u(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, url: str, access_token: Optional[str] = None) -> str:
        u = urlsplit(url)
        claims: Dict[str, Any] = {
            "htm": method.upper(),
            "htu": f"{u.scheme}://{u.netloc}{u.path}",
            "jti": str(uuid.uuid4()),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = _b64u(hashlib.sha256(access_token.encode("ascii")).digest())
        nonce = self._nonces.get(_origin(url))
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.public_jwk})

    def nonce_challenge(self, url: str, res: requests.Response) -> bool:
        """Remembers the response's ``DPoP-Nonce``; True when it is a ``use_dpop_nonce`` challenge (send again)."""
        nonce = res.headers.get("dpop-nonce")
        if not nonce:
            return False
        self._nonces[_origin(url)] = nonce
        if res.status_code == 401:
            return "use_dpop_nonce" in res.headers.get("www-authenticate", "")
        if res.status_code != 400:
            return False
        try:
            return res.json().get("error") == "use_dpop_nonce"
        except ValueError:
            return False


class PrivateKeyJwt:
    """private_key_jwt for an SDK key registered with a public key: every token request carries a fresh
    assertion (``iss`` = ``sub`` = client_id, ``aud`` the token endpoint, one minute of life, a new ``jti``)."""

    def __init__(self, client_id: str, private_key: Any) -> None:
        self.client_id = client_id
        if isinstance(private_key, (bytes, str)):
            data = private_key.encode() if isinstance(private_key, str) else private_key
            private_key = serialization.load_pem_private_key(data, password=None)
        self._key = private_key

    def private_pem(self) -> bytes:
        """The private key as PKCS#8 PEM, to keep (0600 file, keyring)."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @classmethod
    def register(
        cls,
        *,
        issuer: str,
        api_token: str,
        name: str,
        scopes: Optional[list] = None,
        dpop_bound_access_tokens: Optional[bool] = None,
        session: Optional[requests.Session] = None,
    ) -> Tuple["PrivateKeyJwt", str]:
        """Generates a P-256 key pair locally and registers its public half as a new SDK key
        (``POST /api/sdk-keys`` with an API token). Returns the authenticator and the client_id."""
        key = ec.generate_private_key(ec.SECP256R1())
        body: Dict[str, Any] = {"name": name, "token_endpoint_auth_method": "private_key_jwt", "jwk": {**_public_jwk(key), "alg": "ES256"}}
        if scopes is not None:
            body["scopes"] = scopes
        if dpop_bound_access_tokens is not None:
            body["dpop_bound_access_tokens"] = dpop_bound_access_tokens
        res = (session or requests.Session()).post(
            f"{normalise_issuer(issuer)}/api/sdk-keys", json=body, headers={"authorization": f"Bearer {api_token}"}, timeout=10
        )
        try:
            data = res.json()
        except ValueError:
            data = {}
        if res.status_code != 201 or not isinstance(data.get("client_id"), str):
            raise TesseraOAuthError(data.get("error", "invalid_response"), res.status_code, data.get("message", "could not register the SDK key"), False)
        return cls(data["client_id"], key), data["client_id"]

    def assertion(self, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._key, algorithm="ES256")

    def authenticate(self, form: Dict[str, str], endpoint: str) -> None:
        form["client_id"] = self.client_id
        form["client_assertion_type"] = JWT_BEARER_ASSERTION
        form["client_assertion"] = self.assertion(endpoint)

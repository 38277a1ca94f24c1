"""An SDK key trading itself for access tokens (``client_credentials``), and auth adapters for requests/httpx."""
from __future__ import annotations

import base64
import json
import os
import threading
from types import SimpleNamespace
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Union
from urllib.parse import quote_plus

import requests

from ._http import RetryPolicy, SingleFlight, Transport, discover, error_from_response, json_body, normalise_issuer, request_with_retry
from .branding import DEFAULT_BRANDING, Branding
from .credentials import resolve_credentials
from .errors import TesseraConfigError, TesseraOAuthError


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    token_type: str
    scope: str
    expires_in: int
    #: Seconds since the epoch on the client's clock.
    expires_at: float


def _basic(client_id: str, secret: str) -> str:
    """RFC 6749 section 2.3.1: id and secret form-urlencoded, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _claims(jwt: str) -> Dict[str, Any]:
    try:
        part = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}


class ClientCredentials:
    """An SDK key trading itself for access tokens. The token endpoint comes from discovery; the token is
    cached in memory and renewed when it expires within ``refresh_window`` seconds (30); concurrent callers
    (threads) share one request and its outcome; network errors, 5xx and 429 are retried with backoff
    honouring ``Retry-After``, while a refused key (``invalid_client``, ``invalid_scope``, ...) raises
    ``TesseraOAuthError`` at once.

    Credentials and issuer are resolved as :mod:`tessera_client.credentials` documents."""

    def __init__(
        self,
        *,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        key_file: Optional[str] = None,
        account: Optional[str] = None,
        issuer: Optional[str] = None,
        scope: Union[str, Iterable[str], None] = None,
        audience: Optional[str] = None,
        organization_id: Optional[str] = None,
        refresh_window: float = 30.0,
        timeout: float = 10.0,
        retry: Optional[RetryPolicy] = None,
        session: Optional[requests.Session] = None,
        branding: Branding = DEFAULT_BRANDING,
        env: Optional[Mapping[str, str]] = None,
        accounts_file: Optional[str] = None,
        now: Optional[Callable[[], float]] = None,
        sleep: Optional[Callable[[float], None]] = None,
        random: Optional[Callable[[], float]] = None,
        warn: Optional[Callable[[str], None]] = None,
        private_key_jwt: Optional[Any] = None,
        dpop: Optional[Any] = None,
    ) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self.branding = branding
        # private_key_jwt (a tessera_client.pop.PrivateKeyJwt) replaces the secret; dpop (a DpopKey) binds tokens to a key.
        self._assertions = private_key_jwt
        self.dpop = dpop
        creds = (
            SimpleNamespace(client_id=private_key_jwt.client_id, client_secret="", issuer=None, organization_id=None, source="options")
            if private_key_jwt is not None
            else resolve_credentials(
                client_id=client_id,
                client_secret=client_secret,
                key_file=key_file,
                account=account,
                accounts_file=accounts_file,
                env=self._env,
                branding=branding,
            )
        )
        url = issuer or creds.issuer or self._env.get(branding.var("URL")) or branding.default_issuer
        if not url:
            raise TesseraConfigError(
                f"no {branding.product} URL: pass issuer, put \"issuer\" in the key file or account, or set {branding.var('URL')}"
            )
        self.issuer = normalise_issuer(url)
        self.client_id = creds.client_id
        self.source = creds.source
        self._secret = creds.client_secret
        self.scope = scope if isinstance(scope, str) or scope is None else " ".join(scope)
        self.audience = audience
        self.refresh_window = refresh_window
        self._explicit_org = organization_id or creds.organization_id
        t = Transport(session=session or requests.Session(), timeout=timeout, retry=retry or RetryPolicy())
        if now:
            t.now = now
        if sleep:
            t.sleep = sleep
        if random:
            t.random = random
        if warn:
            t.warn = warn
        self._t = t
        self._cached: Optional[AccessToken] = None
        self._metadata: Optional[Dict[str, Any]] = None
        self._org: Optional[str] = None
        self._org_known = False
        self._lock = threading.Lock()
        self._flight: SingleFlight[AccessToken] = SingleFlight()
        self._md_flight: SingleFlight[Dict[str, Any]] = SingleFlight()
        self._org_flight: SingleFlight[Optional[str]] = SingleFlight()

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentials(issuer={self.issuer!r}, client_id={self.client_id!r}, source={self.source!r})"

    def metadata(self) -> Dict[str, Any]:
        """Authorization server metadata (RFC 8414), fetched once."""
        md = self._metadata
        if md is None:
            md = self._md_flight.run(lambda: self._metadata or discover(self._t, self.issuer))
            self._metadata = md
        return md

    def get_token(self) -> str:
        """A valid access token (JWT)."""
        return self.get_access_token().access_token

    def get_access_token(self) -> AccessToken:
        """The cached token, renewed first when it expires within the refresh window."""
        c = self._cached
        if c is not None and c.expires_at - self._t.now() > self.refresh_window:
            return c

        def fetch() -> AccessToken:
            c2 = self._cached  # a caller that just finished may have renewed it
            if c2 is not None and c2.expires_at - self._t.now() > self.refresh_window:
                return c2
            return self._request_token()

        return self._flight.run(fetch)

    async def get_token_async(self) -> str:
        """``get_token`` for asyncio code (the exchange runs in a worker thread)."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.get_token)

    def invalidate(self) -> None:
        """Forgets the cached token (after a resource server refused it, say)."""
        self._cached = None

    def headers(self, method: Optional[str] = None, url: Optional[str] = None) -> Dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``; for a DPoP-bound token ``{"Authorization": "DPoP <token>",
        "DPoP": <proof>}``, which needs the request's method and URL (a proof is made for one request: call
        this for each)."""
        token = self.get_access_token()
        if self.dpop is not None and token.token_type.lower() == "dpop":
            if method is None or url is None:
                raise TesseraConfigError("a DPoP-bound token needs a proof for each request: call headers(method, url)")
            return self._authorization(token, method, url)
        return {"Authorization": f"Bearer {token.access_token}"}

    def _authorization(self, token: AccessToken, method: str, url: str) -> Dict[str, str]:
        if self.dpop is not None and token.token_type.lower() == "dpop":
            return {"Authorization": f"DPoP {token.access_token}", "DPoP": self.dpop.proof(method, url, token.access_token)}
        return {"Authorization": f"Bearer {token.access_token}"}

    def authorization(self, method: str, url: str) -> Dict[str, str]:
        """The headers that authorize one request with the current token: ``Authorization: Bearer``, or for a
        DPoP-bound token ``Authorization: DPoP`` and a fresh proof of ``method`` and ``url`` (with ``ath``,
        RFC 9449 section 7.1). Call it for every request and every retry: the server accepts a proof once."""
        return self._authorization(self.get_access_token(), method, url)

    def authorized_request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A request to Tessera with the current token (:meth:`authorization` per attempt), retried as every
        client request is, and sent once more with the server's nonce when a DPoP-bound token meets
        ``use_dpop_nonce``."""
        extra = dict(kwargs.pop("headers", None) or {})

        def attempt() -> Dict[str, Any]:
            return {"headers": {**extra, **self.authorization(method, url)}}

        res = request_with_retry(self._t, method, url, prepare=attempt, **kwargs)
        if self.dpop is not None and self.dpop.nonce_challenge(url, res):
            res.close()
            res = request_with_retry(self._t, method, url, prepare=attempt, **kwargs)
        return res

    def _request_token(self) -> AccessToken:
        endpoint = self.metadata()["token_endpoint"]
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        started = self._t.now()

        def attempt() -> Dict[str, Any]:
            # Built anew for every attempt: an assertion and a proof are each accepted once, so a retry
            # after a 5xx or a lost answer carries a new jti (the server may have recorded the first).
            data = dict(form)
            headers = {"accept": "application/json"}
            if self._assertions is not None:
                self._assertions.authenticate(data, endpoint)
            else:
                headers["authorization"] = _basic(self.client_id, self._secret)
            if self.dpop is not None:
                headers["DPoP"] = self.dpop.proof("POST", endpoint)
            return {"data": data, "headers": headers}

        res = request_with_retry(self._t, "POST", endpoint, prepare=attempt)
        if self.dpop is not None and self.dpop.nonce_challenge(endpoint, res):
            res.close()
            res = request_with_retry(self._t, "POST", endpoint, prepare=attempt)  # RFC 9449 §8: the next proof carries the server's nonce
        if not res.ok:
            raise error_from_response(res)
        body = json_body(res, "the token request")
        if not isinstance(body.get("access_token"), str) or not isinstance(body.get("expires_in"), (int, float)):
            raise TesseraOAuthError("invalid_response", res.status_code, "the token response lacks access_token or expires_in", False)
        token = AccessToken(
            access_token=body["access_token"],
            token_type=body.get("token_type") if isinstance(body.get("token_type"), str) else "Bearer",
            scope=body.get("scope") if isinstance(body.get("scope"), str) else "",
            expires_in=int(body["expires_in"]),
            expires_at=started + float(body["expires_in"]),
        )
        self._cached = token
        return token

    def organization_id(self) -> Optional[str]:
        """The organization the SDK works in: the ``organization_id`` argument (or the key file's/account's),
        else ``TESSERA_ORGANIZATION_ID``, else the ``org_id`` the SDK key's tokens carry, else the first of
        ``GET /api/users/me/organizations`` (with a warning when there are several; None when none).
        Resolved once."""
        if self._org_known:
            return self._org

        def resolve() -> Optional[str]:
            if self._org_known:
                return self._org
            org = self._resolve_org()
            self._org, self._org_known = org, True
            return org

        return self._org_flight.run(resolve)

    def _resolve_org(self) -> Optional[str]:
        if self._explicit_org:
            return self._explicit_org
        from_env = self._env.get(self.branding.var("ORGANIZATION_ID"))
        if from_env:
            return from_env
        token = self.get_token()
        bound = _claims(token).get("org_id")
        if isinstance(bound, str) and bound:
            return bound
        res = self.authorized_request("GET", f"{self.issuer}/api/users/me/organizations", headers={"accept": "application/json"})
        if not res.ok:
            raise error_from_response(res)
        body = json_body(res, "the organizations request")
        items = body.get("organizations") or []
        if not items:
            return None
        chosen = items[0]
        if len(items) > 1:
            self._t.warn(
                f"{self.branding.product}: the SDK key's owner belongs to {len(items)} organizations; using {chosen['id']} "
                f"({chosen.get('name')}). Set {self.branding.var('ORGANIZATION_ID')} or pass organization_id to choose."
            )
        return chosen["id"]


def _is_invalid_token(status: int, challenge: str) -> bool:
    return status == 401 and "invalid_token" in challenge


class ClientCredentialsAuth(requests.auth.AuthBase):
    """``requests`` authentication with a ``ClientCredentials`` token::

        session.auth = ClientCredentialsAuth(ClientCredentials())

    When the server answers 401 ``invalid_token``, the token is renewed once and the request replayed."""

    def __init__(self, credentials: Optional[ClientCredentials] = None, **options: Any) -> None:
        self.credentials = credentials if credentials is not None else ClientCredentials(**options)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.credentials.get_access_token()
        if self.credentials.dpop is not None and token.token_type.lower() == "dpop":
            r.headers["Authorization"] = f"DPoP {token.access_token}"
            r.headers["DPoP"] = self.credentials.dpop.proof(r.method or "GET", r.url or "", token.access_token)
            r.register_hook("response", self._retry_on_nonce)
            return r
        r.headers["Authorization"] = f"Bearer {token.access_token}"
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_on_nonce(self, res: requests.Response, **kwargs: Any) -> requests.Response:
        req = res.request
        dpop = self.credentials.dpop
        if getattr(req, "_tessera_replayed", False) or not dpop.nonce_challenge(req.url or "", res):
            return res
        res.content  # drain, so the connection can be reused
        res.close()
        again = req.copy()
        again._tessera_replayed = True  # type: ignore[attr-defined]
        token = self.credentials.get_access_token()
        again.headers["DPoP"] = dpop.proof(again.method or "GET", again.url or "", token.access_token)
        new = res.connection.send(again, **kwargs)
        new.history.append(res)
        new.request = again
        return new

    def _retry_on_401(self, res: requests.Response, **kwargs: Any) -> requests.Response:
        if not _is_invalid_token(res.status_code, res.headers.get("www-authenticate", "")):
            return res
        req = res.request
        if getattr(req, "_tessera_replayed", False) or (req.body is not None and hasattr(req.body, "read")):
            return res
        self.credentials.invalidate()
        res.content  # drain, so the connection can be reused
        res.close()
        again = req.copy()
        again._tessera_replayed = True  # type: ignore[attr-defined]
        again.headers["Authorization"] = f"Bearer {self.credentials.get_token()}"
        new = res.connection.send(again, **kwargs)
        new.history.append(res)
        new.request = again
        return new


try:
    import httpx as _httpx
except ImportError:  # httpx is optional
    _httpx = None  # type: ignore[assignment]


if _httpx is not None:

    class HttpxAuth(_httpx.Auth):
        """``httpx`` authentication (sync and async clients) with a ``ClientCredentials`` token (a DPoP-bound
        token with a fresh proof per request, sent again once with the server's nonce on ``use_dpop_nonce``);
        a 401 ``invalid_token`` answer renews the token once and replays the request."""

        # The body of a 400/401 tells use_dpop_nonce and invalid_token apart.
        requires_response_body = True

        def __init__(self, credentials: Optional[ClientCredentials] = None, **options: Any) -> None:
            self.credentials = credentials if credentials is not None else ClientCredentials(**options)

        def _sign(self, request: "_httpx.Request", token: AccessToken) -> None:
            for name, value in self.credentials._authorization(token, request.method, str(request.url)).items():
                request.headers[name] = value

        def _nonce_asked(self, request: "_httpx.Request", response: "_httpx.Response") -> bool:
            dpop = self.credentials.dpop
            return dpop is not None and dpop.nonce_challenge(str(request.url), response)

        def sync_auth_flow(self, request: "_httpx.Request") -> Any:
            self._sign(request, self.credentials.get_access_token())
            response = yield request
            if self._nonce_asked(request, response):
                self._sign(request, self.credentials.get_access_token())
                response = yield request
            if _is_invalid_token(response.status_code, response.headers.get("www-authenticate", "")):
                self.credentials.invalidate()
                self._sign(request, self.credentials.get_access_token())
                yield request

        async def async_auth_flow(self, request: "_httpx.Request") -> Any:
            import asyncio

            def token() -> "asyncio.Future[AccessToken]":
                return asyncio.get_running_loop().run_in_executor(None, self.credentials.get_access_token)

            self._sign(request, await token())
            response = yield request
            if self._nonce_asked(request, response):
                self._sign(request, await token())
                response = yield request
            if _is_invalid_token(response.status_code, response.headers.get("www-authenticate", "")):
                self.credentials.invalidate()
                self._sign(request, await token())
                yield request

else:  # pragma: no cover - only without httpx

    class HttpxAuth:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError("HttpxAuth needs httpx: pip install 'tessera-client[httpx]'")

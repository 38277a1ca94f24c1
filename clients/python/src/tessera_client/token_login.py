"""The API-token flow: ``POST /api/users/loginWithToken`` trades an API token for a session token (sent as
``x-access-token``); ``POST /api/users/logout`` ends it everywhere."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional

import requests

from ._http import RetryPolicy, SingleFlight, Transport, error_from_response, json_body, normalise_issuer, request_with_retry
from .accounts import AccountStore
from .branding import DEFAULT_BRANDING, Branding
from .errors import TesseraConfigError


@dataclass(frozen=True)
class Session:
    token: str
    ttl: int
    created: str
    user_id: str
    #: Seconds since the epoch on the client's clock.
    expires_at: float


class TokenLogin:
    """``login()`` trades an API token for a session, ``logout()`` ends it; ``get_token()`` / ``headers()``
    keep one session, logging in again when it expires within ``refresh_window`` seconds.

    The API token: ``api_token`` argument, else ``TESSERA_API_TOKEN``, else the ``account`` argument's (or
    the default account's) saved ``api_token``. The issuer: ``issuer``, the account's, ``TESSERA_URL``,
    the branding's default."""

    def __init__(
        self,
        *,
        issuer: Optional[str] = None,
        api_token: Optional[str] = None,
        account: Optional[str] = None,
        refresh_window: float = 30.0,
        timeout: float = 10.0,
        retry: Optional[RetryPolicy] = None,
        session: Optional[requests.Session] = None,
        branding: Branding = DEFAULT_BRANDING,
        env: Optional[Mapping[str, str]] = None,
        accounts_file: Optional[str] = None,
        now: Optional[Callable[[], float]] = None,
    ) -> None:
        env = os.environ if env is None else env
        b = branding
        token = api_token or (None if account else env.get(b.var("API_TOKEN")))
        acc_issuer = None
        if not token:
            # A named account must hold an API token; the default account is used when it holds one.
            store = AccountStore(accounts_file, branding=b, env=env)
            if account:
                acc = store.load(account)
                if not acc.api_token:
                    raise TesseraConfigError(f"account {acc.name!r} in {store.path} holds no api_token")
                token, acc_issuer = acc.api_token, acc.issuer
            elif store.default_name():
                acc = store.load(None)
                token, acc_issuer = acc.api_token, acc.issuer if acc.api_token else None
        url = issuer or acc_issuer or env.get(b.var("URL")) or b.default_issuer
        if not url:
            raise TesseraConfigError(f"no {b.product} URL: pass issuer or set {b.var('URL')}")
        self.issuer = normalise_issuer(url)
        self._api_token = token
        self._var = b.var("API_TOKEN")
        self.refresh_window = refresh_window
        self._t = Transport(session=session or requests.Session(), timeout=timeout, retry=retry or RetryPolicy())
        if now:
            self._t.now = now
        self._session: Optional[Session] = None
        self._flight: SingleFlight[Session] = SingleFlight()

    def login(self, api_token: Optional[str] = None) -> Session:
        """A new session (the one ``get_token()`` uses when no token is passed)."""
        token = api_token or self._api_token
        if not token:
            raise TesseraConfigError(f"no API token: pass api_token, set {self._var}, or save an account with one")
        started = self._t.now()
        res = request_with_retry(
            self._t,
            "POST",
            f"{self.issuer}/api/users/loginWithToken",
            json={"apiToken": token},
            headers={"accept": "application/json"},
        )
        if not res.ok:
            raise error_from_response(res)
        body = json_body(res, "the login request")
        s = Session(token=body["id"], ttl=int(body["ttl"]), created=body["created"], user_id=body["userId"], expires_at=started + body["ttl"])
        if api_token is None:
            self._session = s
        return s

    def logout(self, token: Optional[str] = None) -> None:
        """Ends the given session (default: the one held). Raises ``TesseraOAuthError`` ``invalid_token``
        when it had already ended."""
        t = token or (self._session.token if self._session else None)
        if not t:
            return
        if self._session is not None and self._session.token == t:
            self._session = None
        res = request_with_retry(self._t, "POST", f"{self.issuer}/api/users/logout", headers={"x-access-token": t})
        if not res.ok:
            raise error_from_response(res)

    def get_token(self) -> str:
        """The held session token, logging in (once for concurrent callers) when none is valid."""
        s = self._session
        if s is not None and s.expires_at - self._t.now() > self.refresh_window:
            return s.token
        return self._flight.run(lambda: self.login()).token

    def headers(self) -> Dict[str, str]:
        """``{"x-access-token": <session token>}``"""
        return {"x-access-token": self.get_token()}

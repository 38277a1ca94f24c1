"""Plumbing shared by the client classes: retries with backoff, error bodies, discovery, single flight."""
from __future__ import annotations

import email.utils
import json
import random as _random
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, Mapping, Optional, TypeVar
from urllib.parse import urlsplit

import requests

from .errors import PERMANENT_OAUTH_ERRORS, TesseraConfigError, TesseraError, TesseraNetworkError, TesseraOAuthError

T = TypeVar("T")


@dataclass
class RetryPolicy:
    #: Retries after the first attempt.
    max_retries: int = 3
    #: First backoff delay in seconds; doubles on each retry, with full jitter.
    base_delay: float = 0.2
    #: Largest backoff delay in seconds.
    max_delay: float = 5.0
    #: Largest ``Retry-After`` honoured, in seconds; longer waits are capped.
    max_retry_after: float = 30.0


@dataclass
class Transport:
    """HTTP session, timeout, retry policy, and the clock/sleep/random that tests may replace."""

    session: requests.Session = field(default_factory=requests.Session)
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random
    #: Seconds since the epoch: token expiry and caches follow it.
    now: Callable[[], float] = time.time
    warn: Callable[[str], None] = lambda m: warnings.warn(m, stacklevel=3)


def normalise_issuer(issuer: str) -> str:
    """A base URL without a trailing slash; http(s) only."""
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TesseraConfigError(f"issuer must be an http(s) URL such as https://auth.example.com, got {issuer!r}")
    return issuer.rstrip("/")


def retry_after_seconds(value: Optional[str], now: float) -> Optional[float]:
    """``Retry-After`` (RFC 9110 section 10.2.3: seconds or an HTTP date) in seconds, or None."""
    if value is None or not value.strip():
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        parsed = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - now)


def _looks_like_html(res: requests.Response) -> bool:
    ctype = res.headers.get("content-type", "").lower()
    return "html" in ctype or res.text.lstrip()[:1] == "<"


def json_body(res: requests.Response, what: str) -> Dict[str, Any]:
    """The JSON object of a response, or a clear error when the server answered something else."""
    try:
        body = res.json()
    except ValueError:
        kind = "HTML" if _looks_like_html(res) else "a non-JSON body"
        raise TesseraError(
            f"{res.url} answered {kind} (HTTP {res.status_code}, {res.headers.get('content-type') or 'no content-type'}) "
            f"to {what}: the URL does not lead to Tessera (check the issuer URL, or a proxy in between)"
        ) from None
    if not isinstance(body, dict):
        raise TesseraError(f"{res.url} answered JSON that is not an object to {what}")
    return body


def error_from_response(res: requests.Response) -> TesseraError:
    """The typed error for a non-2xx answer (RFC 6749 section 5.2 body or Tessera's API body)."""
    try:
        body = res.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if _looks_like_html(res):
            return TesseraError(
                f"{res.url} answered HTML (HTTP {res.status_code}) instead of a Tessera error: the URL does not "
                "lead to Tessera (check the issuer URL, or a proxy in between)"
            )
        body = {}
    err = body.get("error")
    code = err if isinstance(err, str) and err else ("server_error" if res.status_code >= 500 else "http_error")
    desc = body.get("error_description")
    if not isinstance(desc, str):
        desc = body.get("message") if isinstance(body.get("message"), str) else None
    return TesseraOAuthError(code, res.status_code, desc, _retryable(res.status_code, code))


def _retryable(status: int, code: str) -> bool:
    if code in PERMANENT_OAUTH_ERRORS:
        return False
    return status >= 500 or status == 429 or code == "temporarily_unavailable"


def request_with_retry(
    t: Transport, method: str, url: str, *, prepare: Optional[Callable[[], Dict[str, Any]]] = None, **kwargs: Any
) -> requests.Response:
    """One HTTP exchange with retries: network errors (and timeouts), 5xx and 429 are retried with
    exponential backoff and full jitter, waiting at least what ``Retry-After`` asks; any other answer is
    returned as is. After the last retry a retryable status is returned too, and a network failure raises
    ``TesseraNetworkError``. ``prepare`` is called for every attempt and its keyword arguments (headers,
    data) replace those given: a DPoP proof or a client assertion, whose ``jti`` the server accepts once
    even when its answer was then lost, is never sent twice."""
    p = t.retry
    attempt = 0
    while True:
        res: Optional[requests.Response] = None
        failure: Optional[BaseException] = None
        try:
            request_kwargs = {**kwargs, **prepare()} if prepare is not None else kwargs
            res = t.session.request(method, url, timeout=t.timeout, allow_redirects=False, **request_kwargs)
        except (requests.ConnectionError, requests.Timeout) as e:
            failure = e
        if res is not None and res.status_code < 500 and res.status_code != 429:
            return res
        if attempt >= p.max_retries:
            if res is not None:
                return res
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
            raise TesseraNetworkError(f"cannot reach {origin} after {attempt + 1} attempts: {failure}") from failure
        delay = t.random() * min(p.max_delay, p.base_delay * (2**attempt))
        if res is not None:
            asked = retry_after_seconds(res.headers.get("retry-after"), t.now())
            if asked is not None:
                delay = max(delay, min(asked, p.max_retry_after))
            res.close()
        t.sleep(delay)
        attempt += 1


def get_json(t: Transport, url: str, what: str, headers: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """GET a JSON document with retries; non-2xx becomes a typed error."""
    res = request_with_retry(t, "GET", url, headers={"accept": "application/json", **(headers or {})})
    if not res.ok:
        raise error_from_response(res)
    return json_body(res, what)


def discover(t: Transport, issuer: str) -> Dict[str, Any]:
    """RFC 8414 metadata from ``<issuer>/.well-known/oauth-authorization-server``, checked to name the same issuer."""
    url = f"{issuer}/.well-known/oauth-authorization-server"
    res = request_with_retry(t, "GET", url, headers={"accept": "application/json"})
    if res.status_code == 404:
        raise TesseraConfigError(
            f"{issuer} has no authorization server metadata ({url} answered 404): it is not a Tessera URL; "
            "set the issuer to Tessera's base URL (the `issuer` of its tokens)"
        )
    if not res.ok:
        err = error_from_response(res)
        if isinstance(err, TesseraOAuthError):
            raise err
        raise TesseraConfigError(f"{issuer} is not a Tessera: {err}")
    try:
        md = json_body(res, "the metadata request")
    except TesseraError as e:
        raise TesseraConfigError(f"{issuer} is not a Tessera: {e}") from None
    if md.get("issuer") != issuer:
        raise TesseraConfigError(
            f"the metadata of {issuer} names issuer {md.get('issuer')!r} (RFC 8414 section 3.3): use exactly that URL as the issuer"
        )
    if not isinstance(md.get("token_endpoint"), str) or not isinstance(md.get("jwks_uri"), str):
        raise TesseraConfigError(f"the metadata of {issuer} lacks token_endpoint or jwks_uri: it is not a Tessera")
    return md


class _Call(Generic[T]):
    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Optional[T] = None
        self.error: Optional[BaseException] = None


class SingleFlight(Generic[T]):
    """Runs ``fn`` once for every group of concurrent callers (threads): they all get its result or its error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Optional[_Call[T]] = None

    @property
    def in_flight(self) -> bool:
        return self._current is not None

    def wait(self) -> None:
        """Waits for the call under way, if any (its outcome is ignored)."""
        call = self._current
        if call is not None:
            call.done.wait()

    def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            call = self._current
            leader = call is None
            if call is None:
                call = self._current = _Call()
        if leader:
            try:
                call.result = fn()
            except BaseException as e:  # shared with the followers, re-raised below
                call.error = e
            finally:
                with self._lock:
                    self._current = None
                call.done.set()
        else:
            call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)

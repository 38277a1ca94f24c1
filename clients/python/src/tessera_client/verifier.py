"""Verifying Tessera tokens in Python gateways and resource servers.

JWT access tokens are checked locally against Tessera's JWKS: EdDSA, ES256 or RS256 only, ``typ: at+jwt``,
exact ``iss``, ``aud``, ``exp``/``nbf``/``iat`` with tolerance, required claims, scopes. The JWKS is cached
for its ``Cache-Control: max-age`` and refetched on an unknown kid at most once per ``jwks_cooldown``, so a
rotation verifies without failures and a revoked key's tokens fail once the cached set expires. Opaque
tokens (session tokens ``tsr_ses_...``, API tokens ``tsr_pat_...``) are checked with Tessera through
``GET /gateway/verify``.

DPoP-bound tokens (``cnf.jkt``, RFC 9449) are accepted only with ``Authorization: DPoP`` and a fresh proof for
the request, signed by the bound key (``verify(token, dpop=DpopRequest(proof, method, url))`` or
``verify_request(headers, method=..., url=...)``; the WSGI and ASGI middlewares pass the request's own).

With ``revocations="stream"`` the verifier follows Tessera's security events (``GET /events/stream``, see
:mod:`tessera_client.revocations`) and refuses revoked JWTs locally; until the stream has caught up, and once it
has been down longer than ``grace`` seconds, JWTs are refused as unavailable (``when_down="fail-closed"``) or
checked with Tessera (``when_down="remote"``).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Protocol, Sequence, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

import jwt
import requests

from ._http import RetryPolicy, SingleFlight, Transport, normalise_issuer, request_with_retry
from .errors import TesseraError, TesseraVerifyError
from .revocations import DOWN, OK, REVOKED, EventsAuth, RevocationStream

#: Algorithms Tessera signs with.
TESSERA_ALGORITHMS: Tuple[str, ...] = ("EdDSA", "ES256", "RS256")
#: Most tokens remembered as checked (the oldest goes first).
_MAX_CHECKED = 10_000
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_DPOP = re.compile(r"^DPoP +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
#: Algorithms a DPoP proof may be signed with by default (asymmetric only: RFC 9449 section 4.2).
DPOP_PROOF_ALGORITHMS: Tuple[str, ...] = ("ES256", "ES384", "EdDSA", "RS256", "PS256")


class DpopRequest(NamedTuple):
    """The request a DPoP-bound token came with: its ``DPoP`` proof, method and absolute URL (query ignored)."""

    proof: str
    method: str
    url: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _without_query(url: str) -> str:
    try:
        u = urlsplit(url)
    except ValueError:
        return ""
    if not u.scheme or not u.netloc:
        return ""
    return urlunsplit((u.scheme.lower(), u.netloc.lower(), u.path or "/", "", ""))


def _thumbprint(jwk: Mapping[str, Any]) -> Optional[str]:
    """RFC 7638 SHA-256 thumbprint of a public JWK (the required members only, sorted, no spaces)."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        return None
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass
class VerifiedToken:
    #: ``jwt`` (an SDK key's access token) or ``opaque`` (session or API token, confirmed by Tessera).
    kind: str
    #: ``sub``: the client_id for JWTs, the user id for opaque tokens.
    subject: str
    user_id: Optional[str]
    client_id: Optional[str]
    scopes: List[str]
    organization_id: Optional[str]
    #: Expiry in seconds since the epoch, when known.
    expires_at: Optional[int]
    #: The JWT claims (None for opaque tokens).
    claims: Optional[Dict[str, Any]] = None
    #: True when Tessera itself confirmed the token is live.
    checked_remotely: bool = False


def _fail(reason: str, message: str) -> TesseraVerifyError:
    return TesseraVerifyError("temporarily_unavailable" if reason == "unavailable" else "invalid_token", reason, message)


class ProofReplayStore(Protocol):
    """Used DPoP proofs, shared by the verifier processes of a deployment."""

    def first_use(self, key: str, ttl: float) -> bool:
        """Records ``key`` as used for ``ttl`` seconds; True only for the first caller of any process sharing the
        store, False for every later one while the record lasts."""
        ...


class _RedisProofReplayStore:
    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis, self._prefix = redis, prefix

    def first_use(self, key: str, ttl: float) -> bool:
        name = self._prefix + _b64url(hashlib.sha256(key.encode("utf-8")).digest())
        return bool(self._redis.set(name, "1", px=max(1, math.ceil(ttl * 1000)), nx=True))


def redis_proof_replay_store(redis: Any, prefix: str = "tessera:dpop-proof:") -> ProofReplayStore:
    """A :class:`ProofReplayStore` on Redis (or Valkey): one ``SET key 1 PX <ms> NX`` per proof, which Redis answers
    ``OK`` to exactly once for a key while it lives. Pass a redis-py client (or any client whose ``set`` takes ``px``
    and ``nx``); keys are ``<prefix><sha256 of the proof's key thumbprint and jti>``, as the TypeScript verifier's."""
    return _RedisProofReplayStore(redis, prefix)


def extract_token(headers: Mapping[str, Optional[str]]) -> Optional[str]:
    """The bearer credential of a request: ``Authorization: Bearer``, else ``x-access-token``; None when none.
    Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items() if v is not None}
    auth = lower.get("authorization")
    if auth:
        m = _BEARER.match(auth)
        if not m:
            raise _fail("malformed", "the Authorization header is not a Bearer credential")
        return m.group(1)
    x = lower.get("x-access-token")
    return x.strip() if x else None


def _max_age(cache_control: Optional[str]) -> Optional[float]:
    """``max-age`` of a Cache-Control header in seconds, or None (``no-store``/``no-cache`` count as 0)."""
    if not cache_control:
        return None
    if re.search(r"(^|,)\s*(no-store|no-cache)\s*(,|$)", cache_control, re.IGNORECASE):
        return 0.0
    m = re.search(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", cache_control, re.IGNORECASE)
    return float(m.group(1)) if m else None


def _alg_of(jwk: Mapping[str, Any]) -> Optional[str]:
    """The JWS algorithm a JWK is for: its ``alg``, else what its type and curve imply."""
    if isinstance(jwk.get("alg"), str):
        return jwk["alg"]
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "RSA":
        return "RS256"
    return None


class _KeySet:
    """The remote JWKS, cached for its ``max-age`` (at least the cooldown, at most ``max_cache``),
    revalidated with ``If-None-Match``; an unknown kid refetches it at most once per cooldown. When a
    refresh fails, the keys already held go on being used."""

    def __init__(self, t: Transport, uri: str, cooldown: float, default_max_age: float, max_cache: float) -> None:
        self._t, self._uri = t, uri
        self._cooldown, self._default_max_age, self._max_cache = cooldown, default_max_age, max_cache
        self._keys: Optional[Dict[str, Tuple[str, jwt.PyJWK]]] = None
        self._etag: Optional[str] = None
        self._expires_at = 0.0
        self._last_fetch = float("-inf")
        self._flight: SingleFlight[None] = SingleFlight()
        #: Changes whenever the keys held change (a new set fetched, or cleared); a 304 keeps it.
        self.generation = 0

    @property
    def fresh(self) -> bool:
        """True while the keys held are within their cache lifetime (no refresh due)."""
        return self._keys is not None and self._t.now() < self._expires_at

    def clear(self) -> None:
        self.generation += 1
        self._keys, self._etag, self._expires_at, self._last_fetch = None, None, 0.0, float("-inf")

    def _ttl(self, age: Optional[float]) -> float:
        return min(self._max_cache, max(self._cooldown, self._default_max_age if age is None else age))

    def _refresh(self) -> None:
        def run() -> None:
            self._last_fetch = self._t.now()
            headers = {"accept": "application/json"}
            if self._etag and self._keys is not None:
                headers["if-none-match"] = self._etag
            res = request_with_retry(self._t, "GET", self._uri, headers=headers)
            if res.status_code == 304 and self._keys is not None:
                self._expires_at = self._t.now() + self._ttl(_max_age(res.headers.get("cache-control")))
                return
            if res.status_code != 200:
                raise TesseraError(f"JWKS {self._uri} answered {res.status_code}")
            try:
                body = res.json()
                raw = body["keys"]
            except (ValueError, KeyError, TypeError):
                raise TesseraError(f"JWKS {self._uri} is not a JSON Web Key Set") from None
            keys: Dict[str, Tuple[str, jwt.PyJWK]] = {}
            for k in raw if isinstance(raw, list) else []:
                if not isinstance(k, dict) or not isinstance(k.get("kid"), str) or k.get("use", "sig") != "sig":
                    continue
                alg = _alg_of(k)
                if alg not in TESSERA_ALGORITHMS:
                    continue
                try:
                    keys[k["kid"]] = (alg, jwt.PyJWK(k, alg))
                except (jwt.PyJWTError, ValueError, KeyError, TypeError):
                    continue  # a key type this client does not handle
            self.generation += 1
            self._keys = keys
            self._etag = res.headers.get("etag")
            self._expires_at = self._t.now() + self._ttl(_max_age(res.headers.get("cache-control")))

        self._flight.run(run)

    def refresh_now(self) -> None:
        """Fetches the key set now, whatever the cooldown (a signed security event names a kid not held)."""
        if self._flight.in_flight:
            self._flight.wait()
        else:
            self._refresh()

    def key(self, kid: Optional[str]) -> Tuple[str, jwt.PyJWK]:
        if self._keys is None or self._t.now() >= self._expires_at:
            try:
                self._refresh()
            except TesseraError as e:
                if self._keys is None:
                    raise _fail("unavailable", f"cannot fetch the signing keys: {e}") from e
                self._t.warn(f"Tessera verifier: JWKS refresh failed, using the keys held: {e}")
        assert self._keys is not None
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        # A fetch under way may bring the key: wait for it. Else refetch, at most once per cooldown.
        if self._flight.in_flight:
            self._flight.wait()
        elif self._t.now() - self._last_fetch >= self._cooldown:
            try:
                self._refresh()
            except TesseraError as e:
                raise _fail("unavailable", f"cannot fetch the signing keys: {e}") from e
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        raise _fail("unknown_kid", "the token is signed by an unknown key")


class Verifier:
    """Verifies Tessera access tokens for a resource server whose audience is ``audience``.

    ``verify(token, scopes=[...])`` returns a :class:`VerifiedToken` or raises :class:`TesseraVerifyError`
    (``invalid_token`` 401, ``insufficient_scope`` 403, ``temporarily_unavailable`` 503).

    DPoP proofs: ``dpop_max_remembered`` proof jtis are remembered to refuse replays (default 100000). A replay within
    the proof's lifetime is refused as long as at most ``dpop_max_remembered - ceil(dpop_max_remembered / 10)`` other
    proofs were accepted since: when the memory is full of live proofs, the oldest tenth is forgotten at once. Replays
    reaching another verifier instance are not seen here: give ``dpop_replay`` (a record shared by every verifier
    process, see :func:`redis_proof_replay_store`) for that. It is asked after every other check passed; when it
    raises, the token is refused as ``unavailable`` (503), never accepted unchecked (bound its wait with the client's
    own timeout, e.g. redis-py's ``socket_timeout``)."""

    def __init__(
        self,
        issuer: str,
        audience: Union[str, Sequence[str]],
        *,
        algorithms: Sequence[str] = TESSERA_ALGORITHMS,
        jwks_uri: Optional[str] = None,
        clock_tolerance: float = 30.0,
        jwks_cooldown: float = 30.0,
        jwks_default_max_age: float = 300.0,
        jwks_max_cache: float = 3600.0,
        remote_jwt: Union[bool, Callable[[Dict[str, Any]], bool]] = False,
        remote_cache_ttl: float = 5.0,
        max_cache_entries: int = 10_000,
        opaque_tokens: bool = True,
        timeout: float = 10.0,
        session: Optional[requests.Session] = None,
        now: Optional[Callable[[], float]] = None,
        warn: Optional[Callable[[str], None]] = None,
        revocations: Optional[str] = None,
        events_auth: Optional[EventsAuth] = None,
        grace: float = 5.0,
        when_down: str = "fail-closed",
        max_token_lifetime: float = 86_400.0,
        events_url: Optional[str] = None,
        events_audience: Optional[str] = None,
        events_idle_timeout: float = 45.0,
        dpop_algorithms: Sequence[str] = DPOP_PROOF_ALGORITHMS,
        dpop_max_age: float = 60.0,
        dpop_max_remembered: int = 100_000,
        dpop_replay: Optional["ProofReplayStore"] = None,
    ) -> None:
        self.issuer = normalise_issuer(issuer)
        self.audiences = [audience] if isinstance(audience, str) else list(audience)
        if not self.audiences or not all(self.audiences):
            raise TesseraError("audience is required")
        self.algorithms = list(algorithms)
        bad = [a for a in self.algorithms if a not in TESSERA_ALGORITHMS]
        if bad:
            raise TesseraError(f"algorithms {bad} cannot be allowed: Tessera signs with {', '.join(TESSERA_ALGORITHMS)} only")
        self.tolerance = clock_tolerance
        self._dpop_algorithms = [a for a in dpop_algorithms]
        if any(a == "none" or a.startswith("HS") for a in self._dpop_algorithms):
            raise TesseraError("none and HMAC algorithms cannot sign DPoP proofs")
        self._dpop_max_age = dpop_max_age
        if isinstance(dpop_max_remembered, bool) or not isinstance(dpop_max_remembered, int) or dpop_max_remembered < 1:
            raise TesseraError("dpop_max_remembered must be a positive integer")
        self._dpop_max_remembered = dpop_max_remembered
        self._dpop_replay = dpop_replay
        #: Proof jtis seen by this verifier (thumbprint and jti), with when they stop mattering.
        self._used_proofs: "OrderedDict[str, float]" = OrderedDict()
        self._proof_lock = threading.Lock()
        #: Tokens whose signature and fixed claims were checked (exact bytes -> key set generation, kid,
        #: payload): a gateway sees one token many times until it expires.
        self._checked: "OrderedDict[str, Tuple[int, Optional[str], Dict[str, Any]]]" = OrderedDict()
        self._checked_lock = threading.Lock()
        t = Transport(session=session or requests.Session(), timeout=timeout, retry=RetryPolicy(max_retries=1))
        if now:
            t.now = now
        if warn:
            t.warn = warn
        self._t = t
        self._keys = _KeySet(t, jwks_uri or f"{self.issuer}/.well-known/jwks.json", jwks_cooldown, jwks_default_max_age, jwks_max_cache)
        self._remote_jwt = remote_jwt
        self._cache_ttl = remote_cache_ttl
        self._max_entries = max_cache_entries
        self._opaque = opaque_tokens
        self._cache: "OrderedDict[str, Tuple[float, Union[VerifiedToken, TesseraVerifyError]]]" = OrderedDict()
        self._cache_lock = threading.Lock()
        if revocations not in (None, "stream"):
            raise TesseraError("revocations must be 'stream' or None")
        if when_down not in ("fail-closed", "remote"):
            raise TesseraError("when_down must be 'fail-closed' or 'remote'")
        self._when_down = when_down
        #: The security events subscription (``revocations="stream"``), else None.
        self.revocation_stream: Optional[RevocationStream] = None
        if revocations == "stream":
            if events_auth is None:
                raise TesseraError("revocations='stream' needs events_auth (a credential with scope events:read, or a callable returning a token)")
            self.revocation_stream = RevocationStream(
                t,
                self.issuer,
                events_auth,
                self._keys.key,
                self._keys.refresh_now,
                self._forget_user,
                grace=grace,
                max_token_lifetime=max_token_lifetime,
                url=events_url,
                audience=events_audience,
                idle_timeout=events_idle_timeout,
                algorithms=tuple(self.algorithms),
            )
            self.revocation_stream.start()

    def _forget_user(self, user_id: str) -> None:
        """Remote answers about a user whose sessions, API tokens or status changed are stale: drop them."""
        with self._cache_lock:
            for k in [k for k, (_, r) in self._cache.items() if isinstance(r, VerifiedToken) and r.user_id == user_id]:
                del self._cache[k]

    def close(self) -> None:
        """Stops the security events subscription, if any."""
        if self.revocation_stream is not None:
            self.revocation_stream.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def clear_caches(self) -> None:
        """Forgets cached keys and remote answers."""
        self._keys.clear()
        with self._checked_lock:
            self._checked.clear()
        with self._cache_lock:
            self._cache.clear()

    # -- remote checks ----------------------------------------------------------------------------------

    def _ask_tessera(self, token: str) -> VerifiedToken:
        try:
            res = request_with_retry(self._t, "GET", f"{self.issuer}/gateway/verify", headers={"authorization": f"Bearer {token}"})
        except TesseraError as e:
            raise _fail("unavailable", f"cannot reach Tessera to check the token: {e}") from e
        if res.status_code == 401:
            raise _fail("revoked", "the token is invalid, expired or revoked")
        if res.status_code != 200:
            raise _fail("unavailable", f"Tessera answered {res.status_code} to the token check")
        h = res.headers
        subject = h.get("x-tessera-subject", "")
        return VerifiedToken(
            kind="opaque",
            subject=subject,
            user_id=subject or None,
            client_id=h.get("x-tessera-client-id") or None,
            scopes=[s for s in h.get("x-tessera-scopes", "").split(" ") if s],
            organization_id=h.get("x-tessera-org-id") or None,
            expires_at=None,
            checked_remotely=True,
        )

    def _remote_check(self, token: str, exp: Optional[float]) -> VerifiedToken:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._t.now()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], TesseraVerifyError):
                raise hit[1]
            return hit[1]
        result: Union[VerifiedToken, TesseraVerifyError]
        try:
            result = self._ask_tessera(token)
        except TesseraVerifyError as e:
            if e.code == "temporarily_unavailable":
                raise  # not cached
            result = e
        until = self._t.now() + self._cache_ttl
        if exp is not None:
            until = min(until, exp)
        if self._cache_ttl > 0:
            with self._cache_lock:
                self._cache.pop(key, None)
                while len(self._cache) >= self._max_entries:
                    self._cache.popitem(last=False)
                self._cache[key] = (until, result)
        if isinstance(result, TesseraVerifyError):
            raise result
        return result

    # -- JWTs -------------------------------------------------------------------------------------------

    def _check_binding(self, token: str, payload: Mapping[str, Any], request: Optional[DpopRequest]) -> None:
        """RFC 9449 section 7: a token bound to a key (``cnf.jkt``) only with a proof for this request signed by that
        key; an unbound token never with the DPoP scheme. The proof: ``typ`` dpop+jwt, an allowed asymmetric
        algorithm, a public ``jwk`` that verifies it, ``htm`` and ``htu`` of the request, ``iat`` within
        ``dpop_max_age`` (and the tolerance), ``ath`` the token's hash, and a ``jti`` this verifier has not seen
        (replays reaching another verifier instance are not seen here)."""
        cnf = payload.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str) else None
        if jkt is None:
            if request is not None:
                raise _fail("dpop", "the token is not DPoP-bound: send it with the Bearer scheme")
            return
        if request is None:
            raise _fail("dpop", "the token is DPoP-bound: send it with the DPoP scheme and a proof")
        try:
            header = jwt.get_unverified_header(request.proof)
        except jwt.PyJWTError:
            raise _fail("dpop", "the DPoP proof is not a JWS") from None
        jwk = header.get("jwk")
        alg = header.get("alg")
        if str(header.get("typ", "")).lower() != "dpop+jwt":
            raise _fail("dpop", "the DPoP proof is not of type dpop+jwt")
        if alg not in self._dpop_algorithms:
            raise _fail("dpop", f"the DPoP proof algorithm {alg!r} is not accepted")
        if not isinstance(jwk, dict) or any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise _fail("dpop", "the DPoP proof must carry a public jwk")
        try:
            key = jwt.PyJWK(jwk, alg).key
            # iat is checked below against this verifier's clock (PyJWT would compare it with time.time()).
            claims = jwt.decode(
                request.proof, key, algorithms=[alg], options={"verify_aud": False, "verify_iat": False, "require": ["jti", "htm", "htu", "iat", "ath"]}
            )
        except jwt.PyJWTError:
            raise _fail("dpop", "the DPoP proof is invalid") from None
        now = self._t.now()
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or iat < now - self._dpop_max_age - self.tolerance or iat > now + self.tolerance:
            raise _fail("dpop", "the DPoP proof is too old or made in the future")
        if claims.get("htm") != request.method.upper():
            raise _fail("dpop", "the DPoP proof was made for another method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or _without_query(htu) != _without_query(request.url) or not _without_query(htu):
            raise _fail("dpop", "the DPoP proof was made for another URL")
        if claims.get("ath") != _b64url(hashlib.sha256(token.encode("ascii")).digest()):
            raise _fail("dpop", "the DPoP proof was made for another access token")
        if _thumbprint(jwk) != jkt:
            raise _fail("dpop", "the DPoP proof is signed by another key than the token is bound to")
        seen = f"{jkt}:{claims.get('jti')}"
        with self._proof_lock:
            if self._used_proofs.get(seen, 0.0) > now:
                raise _fail("dpop", "the DPoP proof was used before")
            self._remember_proof(seen, now)
        if self._dpop_replay is not None:
            try:
                first = self._dpop_replay.first_use(seen, self._proof_memory())
            except Exception as e:  # noqa: BLE001 - whatever the store raises, the proof is not known to be fresh
                raise _fail("unavailable", f"the shared record of used DPoP proofs cannot be reached: {e}") from e
            if not first:
                raise _fail("dpop", "the DPoP proof was used before")

    def _remember_proof(self, key: str, now: float) -> None:
        """Records a proof's jti as used from ``now`` (the caller holds ``_proof_lock``). Every entry lives equally long
        and goes in at the end, so (on a clock that does not step back) the expired ones are a prefix: when the memory
        is full they go from the front, stopping at the first live one; if it is still full, the oldest tenth goes at
        once, so a burst of live proofs costs O(1) amortised per proof rather than a scan each."""
        proofs = self._used_proofs
        proofs.pop(key, None)
        if len(proofs) >= self._dpop_max_remembered:
            while proofs and next(iter(proofs.values())) <= now:
                proofs.popitem(last=False)
        if len(proofs) >= self._dpop_max_remembered:
            for _ in range(-(-self._dpop_max_remembered // 10)):
                proofs.popitem(last=False)
        proofs[key] = now + self._proof_memory()

    def _proof_memory(self) -> float:
        """How long a proof's jti matters, in seconds: one second past the last instant its iat is accepted."""
        return self._dpop_max_age + 2 * self.tolerance + 1

    def _check_times(self, payload: Mapping[str, Any]) -> None:
        """``exp``, ``iat`` and ``nbf`` (when present) against this verifier's clock, with the clock tolerance."""
        now = self._t.now()

        def number(claim: str) -> Optional[float]:
            v = payload.get(claim)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _fail("claims", f"the token claims are not acceptable: {claim} is not a number")
            return float(v)

        exp, iat, nbf = number("exp"), number("iat"), number("nbf")
        if exp is not None and exp <= now - self.tolerance:
            raise _fail("expired", "the token has expired")
        if iat is not None and iat > now + self.tolerance:
            raise _fail("claims", "the token claims are not acceptable: it was issued in the future")
        if nbf is not None and nbf > now + self.tolerance:
            raise _fail("claims", "the token claims are not acceptable: it is not valid yet (nbf)")

    def _checked_before(self, token: str) -> Optional[Tuple[Optional[str], Dict[str, Any]]]:
        """The kid and payload of a token whose signature and fixed claims were checked with the key set
        still held and fresh; None otherwise (its time claims are checked again by the caller)."""
        with self._checked_lock:
            hit = self._checked.get(token)
        if hit is None or hit[0] != self._keys.generation or not self._keys.fresh:
            return None
        return hit[1], hit[2]

    def _verify_jwt(self, token: str, dpop: Optional[DpopRequest] = None) -> VerifiedToken:
        # A token seen before (the same bytes): no decoding and no signature check while its key set holds.
        before = self._checked_before(token)
        if before is not None:
            kid, payload = before
        else:
            kid, payload = self._check_signature_and_claims(token)
        return self._after_signature(token, kid, payload, dpop)

    def _check_signature_and_claims(self, token: str) -> Tuple[Optional[str], Dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _fail("malformed", "the token is not a JWS") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _fail("algorithm", f"algorithm {alg!r} is not accepted")
        typ = str(header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise _fail("type", "the token is not an access token (typ must be at+jwt)")
        generation = self._keys.generation
        key_alg, key = self._keys.key(header.get("kid"))
        if key_alg != alg:
            raise _fail("algorithm", "the token algorithm does not match its key")
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=self.tolerance,
                # The time claims are checked below against this verifier's clock (PyJWT would use time.time()).
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"],
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.ExpiredSignatureError:
            raise _fail("expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _fail("audience", "the token aud claim is not acceptable") from None
        except jwt.InvalidIssuerError:
            raise _fail("issuer", "the token iss claim is not acceptable") from None
        except jwt.InvalidSignatureError:
            raise _fail("signature", "the token signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise _fail("algorithm", "the token algorithm is not accepted") from None
        except (jwt.ImmatureSignatureError, jwt.MissingRequiredClaimError, jwt.InvalidIssuedAtError) as e:
            raise _fail("claims", f"the token claims are not acceptable: {e}") from None
        except jwt.PyJWTError:
            raise _fail("malformed", "the token is malformed") from None
        kid = header.get("kid")
        # Checked against the keys held when it began (a refresh under way would not have them).
        if generation == self._keys.generation:
            with self._checked_lock:
                if len(self._checked) >= _MAX_CHECKED and token not in self._checked:
                    self._checked.popitem(last=False)
                self._checked[token] = (generation, kid, payload)
        return kid, payload

    def _after_signature(self, token: str, kid: Optional[str], payload: Dict[str, Any], dpop: Optional[DpopRequest]) -> VerifiedToken:
        self._check_times(payload)
        self._check_binding(token, payload, dpop)
        scope = payload.get("scope")
        base = VerifiedToken(
            kind="jwt",
            subject=str(payload["sub"]),
            user_id=None,
            client_id=payload.get("client_id") if isinstance(payload.get("client_id"), str) else None,
            scopes=[s for s in scope.split(" ") if s] if isinstance(scope, str) else [],
            organization_id=payload.get("org_id") if isinstance(payload.get("org_id"), str) else None,
            expires_at=int(payload["exp"]),
            claims=payload,
        )
        verdict = self.revocation_stream.check(payload, kid) if self.revocation_stream else OK
        if verdict == REVOKED:
            raise _fail("revoked", "the token is revoked")
        stream_down = verdict == DOWN
        if stream_down and self._when_down != "remote":
            raise _fail("unavailable", "the revocation stream is down; tokens cannot be checked")
        rj = self._remote_jwt
        if stream_down or rj is True or (callable(rj) and rj(payload)):
            if "cnf" in payload:
                # /gateway/verify takes a bound token only with a proof for /gateway/verify, which this
                # verifier cannot make: such a token is refused rather than accepted unchecked.
                raise _fail("unavailable", "a DPoP-bound token cannot be checked with Tessera by this verifier")
            confirmed = self._remote_check(token, float(payload["exp"]))
            base.user_id = confirmed.user_id
            base.checked_remotely = True
        return base

    # -- public -----------------------------------------------------------------------------------------

    def verify(self, token: Optional[str], scopes: Iterable[str] = (), dpop: Optional[DpopRequest] = None) -> VerifiedToken:
        """Verifies a token and that it holds every scope in ``scopes``; a DPoP-bound token needs ``dpop``."""
        if not token:
            raise _fail("missing", "no bearer token")
        if len(token) > 8192:
            raise _fail("malformed", "the token is too long")
        if token.count(".") == 2:
            result = self._verify_jwt(token, dpop)
        elif dpop is not None:
            raise _fail("dpop", "only JWT access tokens are DPoP-bound")
        elif self._opaque and _TOKEN_CHARS.match(token):
            result = self._remote_check(token, None)
        else:
            raise _fail("malformed", "the token is not a JWT")
        required = list(scopes)
        missing = [s for s in required if s not in result.scopes]
        if missing:
            raise TesseraVerifyError("insufficient_scope", "scope", f"this request needs scope: {' '.join(required)}", required)
        return result

    def verify_request(
        self, headers: Mapping[str, Optional[str]], scopes: Iterable[str] = (), method: Optional[str] = None, url: Optional[str] = None
    ) -> VerifiedToken:
        """Verifies the token of an incoming request (``Authorization: Bearer``, ``x-access-token``, or
        ``Authorization: DPoP`` with a ``DPoP`` proof checked against ``method`` and the absolute ``url``)."""
        token, dpop = _credential(headers, method, url)
        return self.verify(token, scopes, dpop)

    async def verify_async(self, token: Optional[str], scopes: Iterable[str] = (), dpop: Optional[DpopRequest] = None) -> VerifiedToken:
        """``verify`` for asyncio code (network work runs in a worker thread)."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.verify(token, list(scopes), dpop))


def _credential(headers: Mapping[str, Optional[str]], method: Optional[str], url: Optional[str]) -> Tuple[Optional[str], Optional[DpopRequest]]:
    """The request's token, and its DPoP proof with the request's method and URL when it uses the DPoP scheme."""
    lower = {k.lower(): v for k, v in headers.items() if v is not None}
    m = _DPOP.match(lower.get("authorization") or "")
    if not m:
        return extract_token(headers), None
    proof = lower.get("dpop")
    if not proof:
        raise _fail("dpop", "the DPoP scheme needs exactly one DPoP proof header")
    if not method or not url:
        raise TesseraError("verify_request needs method and url to check a DPoP proof")
    return m.group(1), DpopRequest(proof, method, url)


# -- adapters ---------------------------------------------------------------------------------------------


def _refusal(err: TesseraVerifyError, realm: str) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """Status, headers and body of an RFC 6750 section 3 refusal, in Tessera's ``{error, message}`` shape."""
    q = lambda s: s.replace('"', "'").replace("\\", "'")  # noqa: E731
    if err.code == "temporarily_unavailable":
        body = json.dumps({"error": "service_unavailable", "message": str(err)}).encode()
        return 503, [("Content-Type", "application/json"), ("Retry-After", "1")], body
    # A DPoP failure is answered with the DPoP scheme (RFC 9449 section 7.1), everything else with Bearer.
    challenge = f'{"DPoP" if err.reason == "dpop" else "Bearer"} realm="{q(realm)}"'
    if err.reason != "missing":
        if err.code == "insufficient_scope":
            challenge += f', error="insufficient_scope", scope="{q(" ".join(err.scopes))}"'
        else:
            challenge += f', error="invalid_token", error_description="{q(str(err))}"'
    body = json.dumps({"error": err.code, "message": str(err)}).encode()
    headers = [("Content-Type", "application/json"), ("WWW-Authenticate", challenge), ("Cache-Control", "no-store")]
    return err.status, headers, body


_REASONS = {401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


class WSGIMiddleware:
    """Requires a valid token (holding ``scopes``) on every request of a WSGI app; the verified token is
    ``environ["tessera.token"]``. Refusals are 401/403 with an RFC 6750 challenge, 503 when a required check
    with Tessera could not be made. ``exempt`` lists paths left open (health checks)."""

    def __init__(self, app: Any, verifier: Verifier, scopes: Iterable[str] = (), realm: str = "tessera", exempt: Iterable[str] = ()) -> None:
        self.app, self.verifier, self.scopes, self.realm, self.exempt = app, verifier, list(scopes), realm, set(exempt)

    def __call__(self, environ: Dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "") in self.exempt:
            environ["tessera.token"] = None
            return self.app(environ, start_response)
        headers = {
            "authorization": environ.get("HTTP_AUTHORIZATION"),
            "x-access-token": environ.get("HTTP_X_ACCESS_TOKEN"),
            "dpop": environ.get("HTTP_DPOP"),
        }
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
        try:
            environ["tessera.token"] = self.verifier.verify_request(headers, self.scopes, environ.get("REQUEST_METHOD", "GET"), url)
        except TesseraVerifyError as e:
            status, hdrs, body = _refusal(e, self.realm)
            start_response(f"{status} {_REASONS[status]}", hdrs + [("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)


class ASGIMiddleware:
    """The ASGI counterpart of :class:`WSGIMiddleware`: the verified token is ``scope["tessera.token"]``
    (and ``scope["state"]["tessera_token"]`` when the server keeps state)."""

    def __init__(self, app: Any, verifier: Verifier, scopes: Iterable[str] = (), realm: str = "tessera", exempt: Iterable[str] = ()) -> None:
        self.app, self.verifier, self.scopes, self.realm, self.exempt = app, verifier, list(scopes), realm, set(exempt)

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket") or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        headers: Dict[str, Optional[str]] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            if name in ("authorization", "x-access-token", "dpop", "host"):
                headers[name] = v.decode("latin-1")
        server = scope.get("server") or ("localhost", None)
        host = headers.pop("host", None) or (f"{server[0]}:{server[1]}" if server[1] else str(server[0]))
        url = f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{scope.get('path', '')}"
        try:
            token, dpop = _credential(headers, scope.get("method", "GET"), url)
            verified = await self.verifier.verify_async(token, self.scopes, dpop)
        except TesseraVerifyError as e:
            status, hdrs, body = _refusal(e, self.realm)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in hdrs + [("Content-Length", str(len(body)))]]
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        scope["tessera.token"] = verified
        if isinstance(scope.get("state"), dict):
            scope["state"]["tessera_token"] = verified
        await self.app(scope, receive, send)

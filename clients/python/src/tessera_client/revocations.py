"""Tessera's security events stream (``GET /events/stream``) followed by a background thread: the denylist a
locally-verifying gateway needs, in memory and bounded by token expiry. Every Security Event Token (RFC 8417)
is verified before it counts (Tessera's keys, ``typ: secevent+jwt``, ``iss`` the issuer, ``aud`` this receiver, ``iat``
and ``jti`` present); one that fails drops the connection without moving past it, so the verifier stays down; the
stream resumes with ``Last-Event-ID``; while it is down, catching up, or replaying after a ``resync``, its
verdict is ``down`` and the verifier refuses or checks remotely: never silently open."""
from __future__ import annotations

import codecs
import json
import math
import re
import socket
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import jwt
import requests

from ._http import Transport

EV_TOKEN_REVOKED = "urn:tessera:secevent:access-token-revoked"
EV_SDK_KEY_DISABLED = "urn:tessera:secevent:sdk-key-disabled"
EV_SDK_KEY_TOKENS_CUT_OFF = "urn:tessera:secevent:sdk-key-tokens-cut-off"
EV_SDK_KEY_DELETED = "urn:tessera:secevent:sdk-key-deleted"
EV_USER_SUSPENDED = "urn:tessera:secevent:user-suspended"
EV_SIGNING_KEY_REVOKED = "urn:tessera:secevent:signing-key-revoked"
EV_SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
EV_CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"

_LINE = re.compile(r"\r\n|\r|\n")

#: How often the denylist is pruned, and the width of the time slots its jtis are filed by, in seconds.
PRUNE_SLOT = 10.0
#: How long a revoked jti is kept past its ``exp`` (clock skew between Tessera and the verifier), in seconds.
EXP_GRACE = 60.0

#: What the stream says about one verified access token.
OK, REVOKED, DOWN = "ok", "revoked", "down"

EventsAuth = Union[Any, Callable[[], str]]


class RevocationStream:
    """Follows ``/events/stream`` in a daemon thread. ``check(claims, kid)`` is ``ok``, ``revoked`` or ``down``.

    ``key_for(kid)`` returns ``(alg, PyJWK)`` of a signing key (raising when unknown); ``refresh_keys()`` fetches
    the JWKS now; ``on_user_change(user_id)`` is told of every user whose sessions, API tokens or status changed
    (remote answers about them are stale)."""

    def __init__(
        self,
        t: Transport,
        issuer: str,
        auth: EventsAuth,
        key_for: Callable[[Optional[str]], Tuple[str, Any]],
        refresh_keys: Callable[[], None],
        on_user_change: Callable[[str], None],
        *,
        grace: float = 5.0,
        max_token_lifetime: float = 86_400.0,
        url: Optional[str] = None,
        audience: Optional[str] = None,
        idle_timeout: float = 45.0,
        algorithms: Tuple[str, ...] = ("EdDSA", "ES256", "RS256"),
    ) -> None:
        self._t, self._issuer, self._auth = t, issuer, auth
        self._key_for, self._refresh_keys, self._on_user_change = key_for, refresh_keys, on_user_change
        self._grace, self._lifetime, self._idle = grace, max_token_lifetime, idle_timeout
        self._url = url or f"{issuer}/events/stream"
        # The SETs' aud is the receiver: the SDK key's client_id, or the user id of an API or operator token. Known
        # without the server when configured or when the credential is an SDK key's; else the stream names it.
        self._pinned = audience if audience is not None else getattr(auth, "client_id", None)
        self._audience: Optional[str] = self._pinned
        self._algorithms = algorithms
        self._lock = threading.Lock()
        self._jtis: Dict[str, float] = {}  # revoked jti -> its exp (epoch s)
        # The same jtis by the PRUNE_SLOT-wide slot of time in which their record may go: a prune touches only
        # the records due, never every revoked token still alive.
        self._jti_slots: Dict[int, List[str]] = {}
        self._cutoffs: Dict[str, Tuple[float, float]] = {}  # client_id -> (tokens_valid_after, keep until)
        self._kids: Dict[str, float] = {}
        self._last_id: Optional[str] = None
        self._live = False
        self._ever_live = False
        self._missed = False  # a resync said events were missed: down until the replay is caught up
        self._down_since = t.now()
        self._last_prune = 0.0
        self._stopped = threading.Event()
        self._live_event = threading.Event()
        self._res: Optional[requests.Response] = None
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="tessera-revocation-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stops the thread (closing the connection it reads) and waits a little for it to end."""
        self._stopped.set()
        self._live_event.set()
        res = self._res
        if res is not None:
            # Closing the response does not wake a thread blocked reading its socket; shutting the socket down does.
            try:
                sock = getattr(getattr(res.raw, "_connection", None), "sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                res.close()
            except Exception:  # noqa: BLE001 - closing a socket another thread reads may raise anything
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        self._session.close()

    @property
    def is_live(self) -> bool:
        """True once the stream has caught up (the server said ``live``) and is still connected."""
        return self._live

    @property
    def last_event_id(self) -> Optional[str]:
        """The id of the last event applied (what a reconnect resumes after)."""
        return self._last_id

    def wait_live(self, timeout: Optional[float] = None) -> bool:
        """Waits until the stream is live (or closed); True when live."""
        self._live_event.wait(timeout)
        return self._live

    # -- the verdict ---------------------------------------------------------------------------------------

    def check(self, claims: Dict[str, Any], kid: Optional[str]) -> str:
        now = self._t.now()
        with self._lock:
            self._prune(now)
            jti, client, iat = claims.get("jti"), claims.get("client_id"), claims.get("iat")
            if isinstance(jti, str) and jti in self._jtis:
                return REVOKED
            if kid is not None and kid in self._kids:
                return REVOKED
            cut = self._cutoffs.get(client) if isinstance(client, str) else None
            if cut is not None and (not isinstance(iat, (int, float)) or iat < cut[0]):
                return REVOKED
            if not self._live and (self._missed or not self._ever_live or now - self._down_since > self._grace):
                return DOWN
            return OK

    def _prune(self, now: float) -> None:
        if now - self._last_prune < PRUNE_SLOT:
            return
        self._last_prune = now
        for slot in [k for k in self._jti_slots if (k + 1) * PRUNE_SLOT <= now]:
            # A jti revoked again with a later exp stays: its later slot removes it.
            for jti in self._jti_slots.pop(slot):
                exp = self._jtis.get(jti)
                if exp is not None and exp + EXP_GRACE < now:
                    del self._jtis[jti]
        for k in [k for k, c in self._cutoffs.items() if c[1] < now]:
            del self._cutoffs[k]
        for k in [k for k, until in self._kids.items() if until < now]:
            del self._kids[k]

    def _revoke_jti(self, jti: str, exp: float, now: float) -> None:
        """Records the revocation of ``jti`` until ``exp`` (epoch s), at most the longest token lifetime from now; a
        later revocation of the same jti never shortens it. Called with the lock held."""
        if not math.isfinite(exp):
            exp = math.inf
        kept = max(self._jtis.get(jti, 0.0), min(exp, now + self._lifetime))
        self._jtis[jti] = kept
        self._jti_slots.setdefault(int((kept + EXP_GRACE) // PRUNE_SLOT), []).append(jti)

    @property
    def denylist_size(self) -> int:
        """How many entries the denylist holds (revoked jtis, SDK keys cut off, signing keys revoked)."""
        with self._lock:
            return len(self._jtis) + len(self._cutoffs) + len(self._kids)

    def _set_live(self, live: bool) -> None:
        with self._lock:
            if live == self._live:
                return
            self._live = live
            if live:
                self._ever_live, self._missed = True, False
            else:
                self._down_since = self._t.now()
        if live:
            self._live_event.set()
        else:
            self._live_event.clear()

    # -- the connection ------------------------------------------------------------------------------------

    def _authorization(self) -> Dict[str, str]:
        """The Authorization headers of one connection (a DPoP-bound token with a fresh proof of it)."""
        a = self._auth
        if callable(a) and not hasattr(a, "get_token"):
            return {"authorization": f"Bearer {a()}"}
        if hasattr(a, "authorization"):
            return a.authorization("GET", self._url)
        return {"authorization": f"Bearer {a.get_token()}"}

    def _run(self) -> None:
        retry = 0.25
        while not self._stopped.is_set():
            try:
                if self._connect_once():
                    retry = 0.25
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect (and be down meanwhile)
                if self._stopped.is_set():
                    break
                self._t.warn(f"Tessera revocation stream: {e}; reconnecting")
            self._set_live(False)
            if self._stopped.wait(retry):
                break
            retry = min(retry * 2, 5.0)

    def _pinned_audience(self, authorization: str) -> Optional[str]:
        """The receiver's ``aud`` known without the server: configured, the SDK key's, or the client_id of an SDK key's JWT."""
        if self._pinned is not None:
            return self._pinned
        bearer = authorization.split(" ", 1)[1] if " " in authorization else ""
        if bearer.count(".") != 2:
            return None
        try:
            client_id = jwt.decode(bearer, options={"verify_signature": False}).get("client_id")
        except jwt.PyJWTError:
            return None
        return client_id if isinstance(client_id, str) else None

    def _open(self) -> requests.Response:
        """One GET of the stream with fresh Authorization headers."""
        auth_headers = self._authorization()
        self._audience = self._pinned_audience(auth_headers.get("authorization") or auth_headers.get("Authorization") or "")
        headers = {"accept": "text/event-stream", **auth_headers}
        if self._last_id is not None:
            headers["last-event-id"] = self._last_id
        # The read timeout is the idle timeout: no bytes (heartbeats included) for that long means a dead connection.
        return self._session.get(self._url, headers=headers, stream=True, timeout=(self._t.timeout, self._idle))

    def _connect_once(self) -> bool:
        res = self._open()
        dpop = getattr(self._auth, "dpop", None)
        if dpop is not None and dpop.nonce_challenge(self._url, res):
            # RFC 9449 section 9: the server wants its nonce in the proof; the token itself is still good.
            res.close()
            res = self._open()
        self._res = res
        try:
            if res.status_code == 401 and hasattr(self._auth, "invalidate"):
                self._auth.invalidate()
            if res.status_code != 200:
                raise RuntimeError(f"the events stream answered {res.status_code}")
            decoder = codecs.getincrementaldecoder("utf-8")()
            buffer = ""
            ev_type: str = "message"
            ev_id: Optional[str] = None
            data: List[str] = []
            for chunk in res.iter_content(chunk_size=4096):
                if self._stopped.is_set():
                    return False
                buffer += decoder.decode(chunk)
                while True:
                    m = _LINE.search(buffer)
                    # A lone trailing \r may be the first half of \r\n: wait for the next chunk.
                    if m is None or (m.group() == "\r" and m.end() == len(buffer)):
                        break
                    line, buffer = buffer[: m.start()], buffer[m.end() :]
                    if line == "":
                        if data or ev_type != "message":
                            self._dispatch(ev_type, ev_id, "\n".join(data))
                        ev_type, ev_id, data = "message", None, []
                        continue
                    if line.startswith(":"):
                        continue
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        ev_type = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        ev_id = value
            return True
        finally:
            self._res = None
            res.close()

    def _dispatch(self, ev_type: str, ev_id: Optional[str], data: str) -> None:
        if ev_type == "live":
            self._set_live(True)
            return
        if ev_type == "receiver":
            try:
                aud = json.loads(data).get("aud")
            except (ValueError, AttributeError):
                aud = None
            if not isinstance(aud, str):
                raise ValueError("the events stream announced no receiver")
            if self._audience is None:
                self._audience = aud
            elif aud != self._audience:
                raise ValueError(f"the events stream is addressed to {aud!r}, not this receiver ({self._audience!r})")
            return
        if ev_type == "resync":
            self._t.warn("Tessera revocation stream: events were missed (away longer than their retention); down until the replay is caught up")
            with self._lock:
                self._missed = True
            self._set_live(False)
            return
        if ev_type != "message":
            return
        self._apply(self._verify_set(data))
        if ev_id is not None:
            self._last_id = ev_id

    def _verify_set(self, token: str) -> Dict[str, Any]:
        """The claims of a SET verified with Tessera's keys (the JWKS fetched again once when its kid is unknown);
        raises otherwise, which drops the connection without advancing ``Last-Event-ID``."""
        if self._audience is None:
            raise ValueError("a SET arrived before the stream named its receiver (set events_audience)")
        header = jwt.get_unverified_header(token)
        if str(header.get("typ", "")).lower() not in ("secevent+jwt", "application/secevent+jwt"):
            raise ValueError("a security event is not a SET (typ must be secevent+jwt)")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise ValueError(f"a security event is signed with {alg!r}")
        try:
            key_alg, key = self._key_for(kid)
        except Exception:  # noqa: BLE001 - an unknown kid: a new signing key; fetch the key set now
            self._refresh_keys()
            key_alg, key = self._key_for(kid)
        if key_alg != alg:
            raise ValueError("a security event's algorithm does not match its key")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            issuer=self._issuer,
            audience=self._audience,
            leeway=60,
            options={"require": ["iss", "iat", "jti", "aud"], "verify_aud": True, "verify_iat": True},
        )
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise ValueError("a SET's jti is not a string")
        if not isinstance(claims.get("events"), dict):
            raise ValueError("a SET has no events claim")
        return claims

    def _apply(self, claims: Dict[str, Any]) -> None:
        events = claims.get("events")
        if not isinstance(events, dict):
            return
        now = self._t.now()
        users = []
        refresh = False

        def s(v: Any) -> Optional[str]:
            return v if isinstance(v, str) else None

        def n(v: Any) -> Optional[float]:
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        with self._lock:
            # Tokens of `client` issued before `after` (epoch s; inf: all) are refused until every one has expired.
            def cut(client: Optional[str], after: float) -> None:
                if client is None:
                    return
                prev = self._cutoffs.get(client, (0.0, 0.0))
                until = max(prev[1], (max(after, now) if math.isfinite(after) else now) + self._lifetime)
                self._cutoffs[client] = (max(prev[0], after), until)

            for typ, e in events.items():
                if not isinstance(e, dict):
                    continue
                if typ == EV_TOKEN_REVOKED:
                    jti = s(e.get("jti"))
                    if jti is not None:
                        exp = n(e.get("exp"))
                        self._revoke_jti(jti, exp if exp is not None else math.inf, now)
                elif typ in (EV_SDK_KEY_DISABLED, EV_SDK_KEY_TOKENS_CUT_OFF):
                    tva = n(e.get("tokens_valid_after"))
                    cut(s(e.get("client_id")), tva if tva is not None else math.inf)
                    users.append(s(e.get("user_id")))
                elif typ == EV_SDK_KEY_DELETED:
                    cut(s(e.get("client_id")), math.inf)
                elif typ == EV_SIGNING_KEY_REVOKED:
                    kid = s(e.get("kid"))
                    if kid is not None:
                        self._kids[kid] = now + self._lifetime
                    refresh = True
                elif typ in (EV_USER_SUSPENDED, EV_SESSION_REVOKED, EV_CREDENTIAL_CHANGE):
                    users.append(s(e.get("user_id")))
        for u in users:
            if u:
                self._on_user_change(u)
        if refresh:
            # Another key signs from now on: fetch the key set now rather than at the next unknown kid.
            try:
                self._refresh_keys()
            except Exception as err:  # noqa: BLE001
                self._t.warn(f"Tessera revocation stream: JWKS refresh failed: {err}")

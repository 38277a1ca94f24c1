"""Where the SDK key comes from. First match wins, the same order as the TypeScript client:

=====  ==========================================================  ==============================================
Order  Source                                                      Issuer taken from
=====  ==========================================================  ==============================================
1      explicit arguments: ``client_id`` + ``client_secret``,       ``issuer`` argument, else as below
       or ``account="name"`` (that saved account)
2      a JSON key file: ``key_file`` argument, else the path in     the file's ``"issuer"``
       ``TESSERA_SDK_KEY`` (``{"client_id", "client_secret"}``)
3      ``TESSERA_CLIENT_ID`` + ``TESSERA_CLIENT_SECRET``
4      a saved account: ``TESSERA_ACCOUNT``, else the default one   the account's ``issuer``
=====  ==========================================================  ==============================================

The issuer is the ``issuer`` argument, else the one the source names, else ``TESSERA_URL``, else the
branding's default issuer. ``TESSERA_`` is the branding's prefix.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from .accounts import AccountStore
from .branding import DEFAULT_BRANDING, Branding
from .errors import TesseraConfigError


@dataclass
class SdkCredentials:
    client_id: str
    client_secret: str
    #: ``arguments``, ``account``, ``key_file`` or ``environment``.
    source: str
    issuer: Optional[str] = None
    organization_id: Optional[str] = None
    account: Optional[str] = None


def read_key_file(path: str, origin: str = "key_file") -> SdkCredentials:
    """A JSON key file ``{"client_id", "client_secret"[, "issuer"]}``; errors name the file (and the variable
    that pointed at it) and the fix."""
    via = f" (from {origin})" if origin != "key_file" else ""
    try:
        with open(os.path.expanduser(path), "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise TesseraConfigError(f"cannot read the SDK key file {path}{via}: {e.strerror}; check the path") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise TesseraConfigError(
            f'the SDK key file {path}{via} is not JSON ({e}); it must hold {{"client_id": "s_...", "client_secret": "..."}}'
        ) from None
    cid = data.get("client_id") if isinstance(data, dict) else None
    secret = data.get("client_secret") if isinstance(data, dict) else None
    if not isinstance(cid, str) or not cid or not isinstance(secret, str) or not secret:
        raise TesseraConfigError(
            f'the SDK key file {path}{via} must hold {{"client_id": "s_...", "client_secret": "..."}} '
            "(as POST /api/sdk-keys returns them)"
        )
    issuer = data.get("issuer")
    org = data.get("organization_id")
    return SdkCredentials(
        cid,
        secret,
        "key_file",
        issuer if isinstance(issuer, str) and issuer else None,
        org if isinstance(org, str) and org else None,
    )


def resolve_credentials(
    *,
    client_id: Optional[str] = None,
    client_secret: Optional[str] = None,
    key_file: Optional[str] = None,
    account: Optional[str] = None,
    accounts_file: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    branding: Branding = DEFAULT_BRANDING,
) -> SdkCredentials:
    """The SDK key to use, first match wins (see the module's table)."""
    env = os.environ if env is None else env
    b = branding
    if client_id is not None or client_secret is not None:
        if not client_id or not client_secret:
            raise TesseraConfigError("pass both client_id and client_secret")
        return SdkCredentials(client_id, client_secret, "arguments")
    if account is not None:
        return _from_account(AccountStore(accounts_file, branding=b, env=env), account)
    if key_file is not None:
        return read_key_file(key_file)
    env_key = env.get(b.var("SDK_KEY"))
    if env_key:
        return read_key_file(env_key, b.var("SDK_KEY"))
    cid, secret = env.get(b.var("CLIENT_ID")), env.get(b.var("CLIENT_SECRET"))
    if cid and secret:
        return SdkCredentials(cid, secret, "environment")
    if cid or secret:
        missing = b.var("CLIENT_SECRET") if cid else b.var("CLIENT_ID")
        raise TesseraConfigError(f"{missing} is not set: set both {b.var('CLIENT_ID')} and {b.var('CLIENT_SECRET')}")
    store = AccountStore(accounts_file, branding=b, env=env)
    named = env.get(b.var("ACCOUNT"))
    if named:
        return _from_account(store, named)
    if store.default_name():
        return _from_account(store, None)
    raise TesseraConfigError(
        f"no {b.product} credentials: pass client_id and client_secret, set {b.var('SDK_KEY')} to a key file, "
        f"set {b.var('CLIENT_ID')} and {b.var('CLIENT_SECRET')}, or save an account "
        f"(`tessera-client accounts save NAME --default ...`; none in {store.path})"
    )


def _from_account(store: AccountStore, name: Optional[str]) -> SdkCredentials:
    acc = store.load(name)
    if not acc.client_id or not acc.client_secret:
        raise TesseraConfigError(f"account {acc.name!r} in {store.path} holds no SDK key (client_id and client_secret)")
    return SdkCredentials(acc.client_id, acc.client_secret, "account", acc.issuer, acc.organization_id, acc.name)

"""Saved accounts: ``~/.tessera/accounts.json`` (0600), shared with the TypeScript client.

File format (version 1)::

    {
      "version": 1,
      "default": "dev",
      "accounts": {
        "dev": {
          "issuer": "https://auth.example.com",
          "client_id": "s_...",
          "client_secret": "...",          # absent when "secret_store" is "keyring"
          "api_token": "tsr_pat_...",      # optional, likewise
          "organization_id": "...",        # optional
          "secret_store": "file"           # or "keyring" (then "keyring_fields": the secrets kept there)
        }
      }
    }

Secrets go to the system keyring when ``keyring`` is installed and works (service
``Branding.keyring_service``, user ``<account>:<field>``), else into the file. A file that other users can
read is refused.
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .branding import DEFAULT_BRANDING, Branding
from .errors import TesseraConfigError

FORMAT_VERSION = 1
SECRET_FIELDS = ("client_secret", "api_token")


@dataclass
class Account:
    name: str
    issuer: Optional[str] = None
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    api_token: Optional[str] = None
    organization_id: Optional[str] = None
    #: Where the secrets are kept: ``file`` or ``keyring``.
    secret_store: str = "file"
    is_default: bool = False
    _keyring_fields: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    def public(self) -> Dict[str, Any]:
        """What ``list`` shows: everything but the secrets."""
        return {
            "name": self.name,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "organization_id": self.organization_id,
            "has_client_secret": self.client_secret is not None or "client_secret" in self._keyring_fields,
            "has_api_token": self.api_token is not None or "api_token" in self._keyring_fields,
            "secret_store": self.secret_store,
            "default": self.is_default,
        }


def _keyring(use_keyring: Optional[bool], branding: Branding, env: Mapping[str, str]) -> Any:
    """The keyring module when it is installed, allowed and working; else None."""
    if use_keyring is False:
        return None
    if use_keyring is None and env.get(branding.var("KEYRING"), "").lower() in ("0", "false", "no", "off"):
        return None
    try:
        import keyring  # type: ignore[import-not-found]
        import keyring.errors  # type: ignore[import-not-found]

        backend = keyring.get_keyring()
        if getattr(backend, "priority", 0) <= 0:  # the fail or null backend
            raise RuntimeError("no usable keyring backend")
        keyring.get_password(branding.keyring_service, "__probe__")  # raises when no keyring daemon answers
        return keyring
    except Exception as e:
        if use_keyring:
            raise TesseraConfigError(f"the system keyring is not usable ({e}); save with use_keyring=False to keep the secret in the accounts file") from e
        return None


class AccountStore:
    """The accounts file of a branding (``<PREFIX>_ACCOUNTS_FILE`` or ``Branding.accounts_file``)."""

    def __init__(
        self,
        path: Optional[str] = None,
        *,
        branding: Branding = DEFAULT_BRANDING,
        env: Optional[Mapping[str, str]] = None,
        use_keyring: Optional[bool] = None,
    ) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.branding = branding
        self.path = os.path.expanduser(path) if path else branding.accounts_path(self.env)
        self.use_keyring = use_keyring

    # -- file -------------------------------------------------------------------------------------------

    def _read(self) -> Dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {"version": FORMAT_VERSION, "default": None, "accounts": {}}
        except OSError as e:
            raise TesseraConfigError(f"cannot read the accounts file {self.path}: {e.strerror}") from None
        with os.fdopen(fd, "r", encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if os.name == "posix" and st.st_mode & 0o077:
                raise TesseraConfigError(
                    f"the accounts file {self.path} can be read by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                    f"it holds secrets: run `chmod 600 {self.path}` and try again"
                )
            text = f.read()
        try:
            data = json.loads(text)
        except ValueError as e:
            raise TesseraConfigError(f"the accounts file {self.path} is not valid JSON ({e}): fix or delete it") from None
        if not isinstance(data, dict) or not isinstance(data.get("accounts", {}), dict):
            raise TesseraConfigError(f'the accounts file {self.path} must hold {{"version": 1, "accounts": {{...}}}}: fix or delete it')
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise TesseraConfigError(f"the accounts file {self.path} has version {version!r}; this client reads version {FORMAT_VERSION}")
        data.setdefault("accounts", {})
        data.setdefault("default", None)
        return data

    def _write(self, data: Dict[str, Any]) -> None:
        folder = os.path.dirname(self.path) or "."
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".accounts-", dir=folder)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # -- accounts ---------------------------------------------------------------------------------------

    def save(
        self,
        name: str,
        *,
        issuer: Optional[str] = None,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        api_token: Optional[str] = None,
        organization_id: Optional[str] = None,
        set_as_default: bool = False,
        overwrite: bool = True,
    ) -> Account:
        if not name or not name.strip():
            raise TesseraConfigError("an account needs a name")
        if (client_id is None) != (client_secret is None):
            raise TesseraConfigError("save both client_id and client_secret (an SDK key), or neither")
        if client_id is None and api_token is None:
            raise TesseraConfigError("an account needs an SDK key (client_id and client_secret) or an api_token")
        data = self._read()
        if not overwrite and name in data["accounts"]:
            raise TesseraConfigError(f"an account named {name!r} exists already in {self.path}; pass overwrite=True to replace it")
        entry: Dict[str, Any] = {"issuer": issuer, "client_id": client_id, "organization_id": organization_id}
        entry = {k: v for k, v in entry.items() if v is not None}
        secrets = {k: v for k, v in (("client_secret", client_secret), ("api_token", api_token)) if v is not None}
        kr = _keyring(self.use_keyring, self.branding, self.env)
        stored_in_keyring = False
        if kr is not None:
            try:
                for fld in SECRET_FIELDS:
                    if fld in secrets:
                        kr.set_password(self.branding.keyring_service, f"{name}:{fld}", secrets[fld])
                    else:
                        _delete_quietly(kr, self.branding.keyring_service, f"{name}:{fld}")
                stored_in_keyring = True
            except Exception as e:
                if self.use_keyring:
                    raise TesseraConfigError(f"cannot store the secret in the system keyring: {e}") from e
        if stored_in_keyring:
            entry["secret_store"] = "keyring"
            entry["keyring_fields"] = sorted(secrets)
        else:
            entry.update(secrets)
            entry["secret_store"] = "file"
        data["accounts"][name] = entry
        if set_as_default or data.get("default") is None:
            data["default"] = name
        self._write(data)
        return self._account(name, entry, data, kr)

    def _account(self, name: str, entry: Mapping[str, Any], data: Mapping[str, Any], kr: Any = None) -> Account:
        store = entry.get("secret_store", "file")
        secrets: Dict[str, Optional[str]] = {f: entry.get(f) for f in SECRET_FIELDS}
        if store == "keyring":
            kr = kr or _keyring(True if self.use_keyring is None else self.use_keyring, self.branding, self.env)
            if kr is None:
                raise TesseraConfigError(f"account {name!r} keeps its secrets in the system keyring, which is not usable here")
            for fld in SECRET_FIELDS:
                secrets[fld] = kr.get_password(self.branding.keyring_service, f"{name}:{fld}")
        return Account(
            name=name,
            issuer=entry.get("issuer"),
            client_id=entry.get("client_id"),
            client_secret=secrets["client_secret"],
            api_token=secrets["api_token"],
            organization_id=entry.get("organization_id"),
            secret_store=store,
            is_default=data.get("default") == name,
        )

    def load(self, name: Optional[str] = None) -> Account:
        """The named account, else the default one."""
        data = self._read()
        if name is None:
            name = data.get("default")
            if not name:
                raise TesseraConfigError(f"no default account in {self.path}: save one with save_account(..., set_as_default=True)")
        entry = data["accounts"].get(name)
        if not isinstance(entry, dict):
            known = ", ".join(sorted(data["accounts"])) or "none"
            raise TesseraConfigError(
                f"no account named {name!r} in {self.path} (saved accounts: {known}); save it with "
                f"`tessera-client accounts save {name} ...` or save_account({name!r}, ...)"
            )
        return self._account(name, entry, data)

    def default_name(self) -> Optional[str]:
        """The default account's name, or None (no file, or no default)."""
        return self._read().get("default") or None

    def list(self) -> List[Account]:
        """Every account; secrets held in the keyring are not read (``public()`` still says which exist)."""
        data = self._read()
        out = []
        for name, entry in data["accounts"].items():
            store = entry.get("secret_store", "file")
            acc = Account(
                name=name,
                issuer=entry.get("issuer"),
                client_id=entry.get("client_id"),
                client_secret=entry.get("client_secret") if store == "file" else None,
                api_token=entry.get("api_token") if store == "file" else None,
                organization_id=entry.get("organization_id"),
                secret_store=store,
                is_default=data.get("default") == name,
            )
            acc._keyring_fields = tuple(entry.get("keyring_fields") or ()) if store == "keyring" else ()
            out.append(acc)
        return out

    def delete(self, name: str) -> None:
        data = self._read()
        entry = data["accounts"].pop(name, None)
        if entry is None:
            known = ", ".join(sorted(data["accounts"])) or "none"
            raise TesseraConfigError(f"no account named {name!r} in {self.path} (saved accounts: {known})")
        if entry.get("secret_store") == "keyring":
            kr = _keyring(self.use_keyring, self.branding, self.env)
            if kr is not None:
                for fld in SECRET_FIELDS:
                    _delete_quietly(kr, self.branding.keyring_service, f"{name}:{fld}")
        if data.get("default") == name:
            data["default"] = None
        self._write(data)


def _delete_quietly(kr: Any, service: str, user: str) -> None:
    try:
        kr.delete_password(service, user)
    except Exception:
        pass


def save_account(
    name: str,
    *,
    issuer: Optional[str] = None,
    client_id: Optional[str] = None,
    client_secret: Optional[str] = None,
    api_token: Optional[str] = None,
    organization_id: Optional[str] = None,
    set_as_default: bool = False,
    overwrite: bool = True,
    path: Optional[str] = None,
    branding: Branding = DEFAULT_BRANDING,
    use_keyring: Optional[bool] = None,
) -> Account:
    """Saves an account (an SDK key and/or an API token, with the issuer). The first account saved becomes
    the default; ``set_as_default=True`` makes this one the default."""
    return AccountStore(path, branding=branding, use_keyring=use_keyring).save(
        name,
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        api_token=api_token,
        organization_id=organization_id,
        set_as_default=set_as_default,
        overwrite=overwrite,
    )


def load_account(name: Optional[str] = None, *, path: Optional[str] = None, branding: Branding = DEFAULT_BRANDING) -> Account:
    """The named account, else the default one; ``TesseraConfigError`` names the file when there is none."""
    return AccountStore(path, branding=branding).load(name)


def list_accounts(*, path: Optional[str] = None, branding: Branding = DEFAULT_BRANDING) -> List[Account]:
    """Every saved account (secrets kept in the keyring are not read)."""
    return AccountStore(path, branding=branding).list()


def delete_account(name: str, *, path: Optional[str] = None, branding: Branding = DEFAULT_BRANDING) -> None:
    AccountStore(path, branding=branding).delete(name)

"""How a platform brands the client when its own SDK embeds it: environment-variable prefix, default
issuer, accounts file and keyring service."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional


@dataclass(frozen=True)
class Branding:
    #: Prefix of the environment variables: ``<PREFIX>_SDK_KEY``, ``<PREFIX>_CLIENT_ID``, ...
    env_prefix: str = "TESSERA"
    #: Issuer used when no argument, key file, variable or account names one.
    default_issuer: Optional[str] = None
    #: Saved accounts file (``~`` expanded); ``<PREFIX>_ACCOUNTS_FILE`` overrides it.
    accounts_file: str = "~/.tessera/accounts.json"
    #: Keyring service name secrets are stored under.
    keyring_service: str = "tessera-client"
    #: Name in messages ("Tessera", or the platform's).
    product: str = "Tessera"

    def var(self, name: str) -> str:
        """The environment variable ``<PREFIX>_<NAME>``."""
        return f"{self.env_prefix}_{name}"

    def accounts_path(self, env: Optional[Mapping[str, str]] = None) -> str:
        env = os.environ if env is None else env
        return os.path.expanduser(env.get(self.var("ACCOUNTS_FILE")) or self.accounts_file)


DEFAULT_BRANDING = Branding()

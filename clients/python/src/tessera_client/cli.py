"""``tessera-client``: tokens, token login and saved accounts from the shell; every answer is JSON on
stdout, every error one line on stderr (exit code 1)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

from .accounts import AccountStore
from .branding import DEFAULT_BRANDING, Branding
from .client_credentials import ClientCredentials
from .credentials import read_key_file
from .errors import TesseraError, TesseraOAuthError
from .token_login import TokenLogin


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def build_parser(prog: str = "tessera-client") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Tessera client: access tokens, token login and saved accounts (JSON output)")
    sub = p.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("token", help="print an access token for an SDK key (key file, environment, or saved account)")
    tok.add_argument("--issuer")
    tok.add_argument("--key-file")
    tok.add_argument("--account")
    tok.add_argument("--scope")
    tok.add_argument("--audience")

    login = sub.add_parser("login", help="trade an API token for a session token (x-access-token)")
    login.add_argument("--issuer")
    login.add_argument("--api-token", help="default: the API_TOKEN variable, else the account's")
    login.add_argument("--account")

    acc = sub.add_parser("accounts", help="saved accounts")
    asub = acc.add_subparsers(dest="action", required=True)
    save = asub.add_parser("save", help="save an account (SDK key and/or API token)")
    save.add_argument("name")
    save.add_argument("--issuer")
    save.add_argument("--key-file", help="read client_id, client_secret and issuer from a key file")
    save.add_argument("--client-id")
    save.add_argument("--client-secret")
    save.add_argument("--api-token")
    save.add_argument("--organization-id")
    save.add_argument("--default", action="store_true", help="make it the default account")
    save.add_argument("--no-keyring", action="store_true", help="keep the secret in the accounts file")
    asub.add_parser("list", help="list saved accounts (no secrets)")
    delete = asub.add_parser("delete", help="delete a saved account")
    delete.add_argument("name")
    return p


def run(argv: Optional[List[str]] = None, branding: Branding = DEFAULT_BRANDING, prog: str = "tessera-client") -> int:
    """Runs the command line; platforms embedding the client pass their branding and program name."""
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "token":
            cc = ClientCredentials(
                issuer=args.issuer, key_file=args.key_file, account=args.account, scope=args.scope, audience=args.audience, branding=branding
            )
            at = cc.get_access_token()
            _print({"access_token": at.access_token, "token_type": at.token_type, "expires_in": at.expires_in, "scope": at.scope, "issuer": cc.issuer})
        elif args.command == "login":
            tl = TokenLogin(issuer=args.issuer, api_token=args.api_token, account=args.account, branding=branding)
            s = tl.login()
            _print({"access_token": s.token, "ttl": s.ttl, "created": s.created, "user_id": s.user_id, "issuer": tl.issuer})
        else:
            store = AccountStore(branding=branding, use_keyring=False if getattr(args, "no_keyring", False) else None)
            if args.action == "save":
                cid, secret, issuer = args.client_id, args.client_secret, args.issuer
                if args.key_file:
                    k = read_key_file(args.key_file)
                    cid, secret, issuer = k.client_id, k.client_secret, issuer or k.issuer
                a = store.save(
                    args.name,
                    issuer=issuer,
                    client_id=cid,
                    client_secret=secret,
                    api_token=args.api_token,
                    organization_id=args.organization_id,
                    set_as_default=args.default,
                )
                _print({"saved": a.public(), "file": store.path})
            elif args.action == "list":
                _print({"accounts": [a.public() for a in store.list()], "file": store.path})
            else:
                store.delete(args.name)
                _print({"deleted": args.name, "file": store.path})
    except TesseraOAuthError as e:
        sys.stderr.write(f"{prog}: {branding.product} refused: {e}\n")
        return 1
    except TesseraError as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()

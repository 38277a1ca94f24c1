"""Saved accounts: the file (0600, default account), the system keyring when it works, and the same file
read and written by the TypeScript client."""
from __future__ import annotations

import json
import os
import subprocess

import keyring
import keyring.backend
import keyring.backends.fail
import pytest

from conftest import CLI, NODE, ROOT
from tessera_client import AccountStore, ClientCredentials, delete_account, list_accounts, load_account, save_account


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.items = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch):
    previous = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    monkeypatch.delenv("TESSERA_KEYRING")
    yield kr
    keyring.set_keyring(previous)


def test_file_store_default_account_list_delete(home):
    save_account("dev", issuer="https://a.example.com", client_id="s_1", client_secret="one")
    save_account("ops", issuer="https://a.example.com", api_token="tsr_pat_x", organization_id="org-1")
    path = home / ".tessera" / "accounts.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    data = json.loads(path.read_text())
    assert data["default"] == "dev", "the first account saved is the default"
    assert data["accounts"]["dev"] == {"issuer": "https://a.example.com", "client_id": "s_1", "client_secret": "one", "secret_store": "file"}
    assert load_account().name == "dev"
    save_account("ops", issuer="https://a.example.com", api_token="tsr_pat_y", set_as_default=True)
    assert load_account().api_token == "tsr_pat_y"
    listed = [a.public() for a in list_accounts()]
    assert [(a["name"], a["default"], a["has_client_secret"]) for a in listed] == [("dev", False, True), ("ops", True, False)]
    assert "one" not in json.dumps(listed), "list shows no secrets"
    delete_account("ops")
    assert [a.name for a in list_accounts()] == ["dev"]
    with pytest.raises(Exception, match="no default account"):
        load_account()


def test_secrets_go_to_the_keyring_when_it_works(tessera, home, memory_keyring):
    key = tessera.sdk_key()
    a = save_account("kr", issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"])
    assert a.secret_store == "keyring"
    text = (home / ".tessera" / "accounts.json").read_text()
    assert key["client_secret"] not in text, "the secret is not in the file"
    assert memory_keyring.items[("tessera-client", "kr:client_secret")] == key["client_secret"]
    listed = list_accounts()[0]
    assert listed.client_secret is None, "listing does not read the keyring"
    assert (listed.public()["has_client_secret"], listed.public()["has_api_token"]) == (True, False)
    cc = ClientCredentials()
    assert cc.source == "account" and cc.get_token()
    delete_account("kr")
    assert memory_keyring.items == {}, "deleting the account removes its secrets"


def test_a_keyring_that_does_not_work_falls_back_to_the_file(home, monkeypatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.delenv("TESSERA_KEYRING")
    try:
        a = save_account("dev", issuer="https://a.example.com", client_id="s_1", client_secret="one")
    finally:
        keyring.set_keyring(previous)
    assert a.secret_store == "file"
    assert json.loads((home / ".tessera" / "accounts.json").read_text())["accounts"]["dev"]["client_secret"] == "one"


def _node(script: str, env: dict) -> str:
    res = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_both_clients_read_and_write_the_same_accounts_file(tessera, home):
    key = tessera.sdk_key()
    client = os.path.join(ROOT, "dist", "src", "client", "index.js")
    # The TypeScript client saves; Python reads and gets a token with it.
    _node(
        f"import {{ saveAccount }} from {json.dumps(client)};"
        f"saveAccount('from-ts', {{ issuer: {json.dumps(tessera.issuer)}, clientId: {json.dumps(key['client_id'])}, "
        f"clientSecret: {json.dumps(key['client_secret'])}, organizationId: 'org-ts', setAsDefault: true }});",
        {"HOME": str(home)},
    )
    acc = load_account()
    assert (acc.name, acc.client_id, acc.organization_id) == ("from-ts", key["client_id"], "org-ts")
    assert ClientCredentials().get_token()
    # Python saves; the TypeScript client reads it and gets a token.
    save_account("from-py", issuer=tessera.issuer, client_id=key["client_id"], client_secret=key["client_secret"], set_as_default=True)
    out = _node(
        f"import {{ ClientCredentials, listAccounts }} from {json.dumps(client)};"
        "const cc = new ClientCredentials();"
        "const tok = await cc.getToken();"
        "console.log(JSON.stringify({ issuer: cc.issuer, client: JSON.parse(Buffer.from(tok.split('.')[1], 'base64url')).client_id,"
        " names: listAccounts().map((a) => a.name) }));",
        {"HOME": str(home)},
    )
    got = json.loads(out)
    assert got == {"issuer": tessera.issuer, "client": key["client_id"], "names": ["from-ts", "from-py"]}
    assert os.stat(AccountStore().path).st_mode & 0o777 == 0o600

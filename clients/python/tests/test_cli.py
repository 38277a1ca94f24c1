"""The `tessera-client` console script: JSON on stdout, one-line errors on stderr."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "src"))


def run(*args, env=None):
    e = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tessera_client.cli", *args], env=e, capture_output=True, text=True, timeout=60)


def test_accounts_save_list_token_login_delete(tessera, home):
    key = tessera.sdk_key()
    keyfile = home / "key.json"
    keyfile.write_text(json.dumps({"client_id": key["client_id"], "client_secret": key["client_secret"], "issuer": tessera.issuer}))
    r = run("accounts", "save", "dev", "--key-file", str(keyfile), "--default")
    assert r.returncode == 0, r.stderr
    saved = json.loads(r.stdout)
    assert saved["saved"]["name"] == "dev" and saved["saved"]["default"] is True and saved["file"] == str(home / ".tessera" / "accounts.json")
    r = run("accounts", "save", "pat", "--issuer", tessera.issuer, "--api-token", tessera.api_token)
    assert r.returncode == 0, r.stderr
    listed = json.loads(run("accounts", "list").stdout)["accounts"]
    assert [(a["name"], a["default"]) for a in listed] == [("dev", True), ("pat", False)]
    assert key["client_secret"] not in json.dumps(listed)

    r = run("token", "--scope", "api")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["token_type"] == "Bearer" and out["expires_in"] == 40 and out["scope"] == "api"
    assert jwt.decode(out["access_token"], options={"verify_signature": False})["client_id"] == key["client_id"]

    r = run("login", "--account", "pat")
    assert r.returncode == 0, r.stderr
    session = json.loads(r.stdout)
    assert session["access_token"].startswith("tsr_ses_") and session["user_id"] == tessera.user_id

    assert json.loads(run("accounts", "delete", "pat").stdout) == {"deleted": "pat", "file": str(home / ".tessera" / "accounts.json")}
    r = run("login", "--account", "pat")
    assert r.returncode == 1 and "no account named 'pat'" in r.stderr and r.stdout == ""


def test_errors_are_one_line_on_stderr(tessera, home):
    r = run("token")
    assert r.returncode == 1 and r.stderr.startswith("tessera-client: no Tessera credentials")
    r = run("token", env={"TESSERA_URL": tessera.issuer, "TESSERA_CLIENT_ID": "s_00000000-0000-4000-8000-000000000000", "TESSERA_CLIENT_SECRET": "x"})
    assert r.returncode == 1 and "Tessera refused: invalid_client" in r.stderr
    r = run("login", "--issuer", tessera.issuer, "--api-token", "tsr_pat_nope")
    assert r.returncode == 1 and "Tessera refused" in r.stderr

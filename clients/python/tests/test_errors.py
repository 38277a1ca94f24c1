"""Bad input gets a clear exception naming the file or variable and the fix."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from functools import partial

import pytest

from tessera_client import ClientCredentials, TesseraConfigError, TesseraError, TokenLogin, load_account, save_account


def test_malformed_key_file_names_the_file_and_the_expected_shape(home, monkeypatch):
    bad = home / "key.json"
    bad.write_text("{not json")
    with pytest.raises(TesseraConfigError) as e:
        ClientCredentials(key_file=str(bad), issuer="http://127.0.0.1:1")
    assert str(bad) in str(e.value) and "is not JSON" in str(e.value) and '"client_id"' in str(e.value)

    bad.write_text(json.dumps({"client_id": "s_1"}))
    monkeypatch.setenv("TESSERA_SDK_KEY", str(bad))
    with pytest.raises(TesseraConfigError) as e:
        ClientCredentials(issuer="http://127.0.0.1:1")
    assert str(bad) in str(e.value) and "TESSERA_SDK_KEY" in str(e.value) and "client_secret" in str(e.value)

    monkeypatch.setenv("TESSERA_SDK_KEY", str(home / "missing.json"))
    with pytest.raises(TesseraConfigError, match="cannot read the SDK key file .*missing.json \\(from TESSERA_SDK_KEY\\)"):
        ClientCredentials(issuer="http://127.0.0.1:1")


def test_half_set_variables_and_no_credentials_at_all(home, monkeypatch):
    monkeypatch.setenv("TESSERA_CLIENT_ID", "s_1")
    with pytest.raises(TesseraConfigError, match="TESSERA_CLIENT_SECRET is not set"):
        ClientCredentials(issuer="http://127.0.0.1:1")
    monkeypatch.delenv("TESSERA_CLIENT_ID")
    with pytest.raises(TesseraConfigError) as e:
        ClientCredentials(issuer="http://127.0.0.1:1")
    for hint in ("TESSERA_SDK_KEY", "TESSERA_CLIENT_ID", "accounts save", str(home / ".tessera" / "accounts.json")):
        assert hint in str(e.value)
    with pytest.raises(TesseraConfigError, match="no Tessera URL: .*TESSERA_URL"):
        ClientCredentials(client_id="s_1", client_secret="x")
    with pytest.raises(TesseraConfigError, match="issuer must be an http\\(s\\) URL"):
        ClientCredentials(client_id="s_1", client_secret="x", issuer="auth.example.com")


def test_an_accounts_file_others_can_read_is_refused(home):
    save_account("dev", issuer="http://127.0.0.1:1", client_id="s_1", client_secret="secret")
    path = home / ".tessera" / "accounts.json"
    assert (os.stat(path).st_mode & 0o777) == 0o600, "created 0600"
    os.chmod(path, 0o644)
    with pytest.raises(TesseraConfigError) as e:
        load_account("dev")
    assert str(path) in str(e.value) and "other users" in str(e.value) and f"chmod 600 {path}" in str(e.value)
    with pytest.raises(TesseraConfigError, match="chmod 600"):
        ClientCredentials()
    os.chmod(path, 0o600)
    assert load_account("dev").client_secret == "secret"


def test_an_unknown_account_names_the_file_and_the_accounts_there(home):
    save_account("dev", issuer="http://127.0.0.1:1", client_id="s_1", client_secret="x")
    save_account("prod", issuer="http://127.0.0.1:1", client_id="s_2", client_secret="y")
    with pytest.raises(TesseraConfigError) as e:
        ClientCredentials(account="staging")
    msg = str(e.value)
    assert "'staging'" in msg and str(home / ".tessera" / "accounts.json") in msg and "dev, prod" in msg and "accounts save staging" in msg
    with pytest.raises(TesseraConfigError, match="no account named 'x'"):
        TokenLogin(account="x")


class _Html(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = b"<!doctype html><html><body>Welcome to our portal</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


@pytest.fixture
def web_server(tmp_path):
    servers = []

    def start(handler):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_an_issuer_that_is_not_a_tessera_no_metadata(web_server, tmp_path, home):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    url = web_server(partial(Quiet, directory=str(tmp_path)))  # a static file server: 404 for the metadata
    cc = ClientCredentials(issuer=url, client_id="s_1", client_secret="x")
    with pytest.raises(TesseraConfigError) as e:
        cc.get_token()
    assert url in str(e.value) and "no authorization server metadata" in str(e.value) and "not a Tessera URL" in str(e.value)


def test_a_server_answering_html(web_server, home):
    url = web_server(_Html)
    cc = ClientCredentials(issuer=url, client_id="s_1", client_secret="x")
    with pytest.raises(TesseraConfigError) as e:
        cc.get_token()
    assert "answered HTML" in str(e.value) and "check the issuer URL" in str(e.value)
    tl = TokenLogin(issuer=url, api_token="tsr_pat_x")
    with pytest.raises(TesseraError, match="answered HTML"):
        tl.login()


def test_issuer_mismatch_in_metadata(tessera, home):
    other = tessera.server.url  # Tessera itself, but not at its public URL
    cc = ClientCredentials(issuer=other, client_id="s_1", client_secret="x")
    with pytest.raises(TesseraConfigError, match=f"names issuer '{tessera.issuer}'.*use exactly that URL"):
        cc.get_token()

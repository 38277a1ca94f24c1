"""A real Tessera for the Python client tests: `node dist/src/cli.js serve` on its own database (in the
cluster DATABASE_URL names, else an embedded one), behind a counting proxy that is its public URL (the
issuer), so tests count the requests Tessera receives. Users, API tokens and signing keys come from the
operator CLI; SDK keys and organizations from the HTTP API."""
from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
CLI = os.path.join(ROOT, "dist", "src", "cli.js")
NODE = os.environ.get("TESSERA_TEST_NODE") or "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `tessera serve` process; stop() and start() again on the same port."""

    def __init__(self, env: Dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        self.proc = subprocess.Popen([NODE, CLI, "serve"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        until = time.time() + 60
        while time.time() < until:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tessera serve exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("tessera serve did not become ready")

    def kill(self) -> None:
        """SIGKILL: the process dies with its requests in flight."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class CountingProxy:
    """A plain HTTP forwarder in front of Tessera that counts requests per path; `fail_next` makes it answer
    the next requests to a path itself with an error status, as an overloaded load balancer would."""

    def __init__(self, backend_port: int) -> None:
        self.counts: Dict[str, int] = {}
        self.failing: Dict[str, List[Any]] = {}
        self.losing: Dict[str, int] = {}
        self.lost: List[Dict[str, Any]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                path = self.path.split("?")[0]
                with lock:
                    proxy.counts[path] = proxy.counts.get(path, 0) + 1
                    f = proxy.failing.get(path)
                    fail = f is not None and f[0] > 0
                    if fail:
                        f[0] -= 1
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive", "transfer-encoding")}
                if fail:
                    out = json.dumps({"error": "temporarily_unavailable", "error_description": "test outage"}).encode()
                    self.send_response(f[1])
                    self.send_header("retry-after", f[2])
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    res = conn.getresponse()
                    data = res.read()
                except OSError:
                    self.send_response(502)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                finally:
                    conn.close()
                with lock:
                    lose = proxy.losing.get(path, 0) > 0
                    if lose:
                        proxy.losing[path] -= 1
                        proxy.lost.append({"path": path, "status": res.status, "headers": headers})
                if lose:
                    out = json.dumps({"error": "temporarily_unavailable", "error_description": "test: answer lost"}).encode()
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _forward

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def fail_next(self, path: str, n: int, status: int = 503, retry_after: str = "0") -> None:
        self.failing[path] = [n, status, retry_after]

    def lose_next(self, path: str, n: int) -> None:
        """Forwards the next ``n`` requests to ``path`` and answers 503 instead of Tessera's answer (which Tessera
        did give: what it recorded, such as a proof's or an assertion's jti, stays recorded)."""
        self.losing[path] = n

    def count(self, path: str) -> int:
        return self.counts.get(path, 0)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Tessera:
    """The session's Tessera: `issuer` is the proxy's URL; `cli()` runs the operator CLI on its database."""

    def __init__(self, env: Dict[str, str], server: Server, proxy: CountingProxy) -> None:
        self.env, self.server, self.proxy = env, server, proxy
        self.issuer = proxy.url
        self.admin_token = ""
        self.user_id = ""
        self.api_token = ""
        self.owners: List[Dict[str, str]] = []
        self.live_keys: List[Dict[str, Any]] = []

    def cli(self, *args: str) -> Any:
        res = subprocess.run([NODE, CLI, *args], env={**os.environ, **self.env}, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(args)} failed: {res.stderr}")
        return json.loads(res.stdout)

    def api(self, method: str, path: str, token: Optional[str] = None, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.server.url}{path}", headers={"authorization": f"Bearer {token or self.api_token}"}, timeout=10, **kwargs)

    def owner(self) -> Dict[str, str]:
        """A user (made through the admin API) and its API token (from the CLI; scopes api, quantum_tokens)."""
        email = f"py-{secrets.token_hex(4)}@example.com"
        res = self.api("POST", "/admin/users", self.admin_token, json={"email": email, "name": "Py Tester"})
        assert res.status_code == 201, res.text
        uid = res.json()["id"]
        token = self.cli("tokens", "create", "--user", uid, "--scopes", "api,quantum_tokens", "--name", "py")["token"]
        o = {"id": uid, "email": email, "token": token}
        self.owners.append(o)
        return o

    def sdk_key(self, name: str = "sdk", owner: Optional[Dict[str, str]] = None, **body: Any) -> Dict[str, Any]:
        """A new SDK key (deleted after the test); a user holds at most two, so owners are made as needed."""
        if owner is None:
            owner = next((o for o in self.owners if sum(1 for k in self.live_keys if k["_owner"] is o) < 2), None) or self.owner()
        res = self.api("POST", "/api/sdk-keys", owner["token"], json={"name": name, **body})
        assert res.status_code == 201, res.text
        key = {**res.json(), "_owner": owner}
        self.live_keys.append(key)
        return key

    def delete_keys(self) -> None:
        for k in self.live_keys:
            self.api("DELETE", f"/api/sdk-keys/{k['client_id']}", k["_owner"]["token"])
        self.live_keys.clear()


def _server_env(database_url: str, issuer: str) -> Dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "TESSERA_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TESSERA_PEPPER": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TESSERA_ISSUER": issuer,
        "TESSERA_HOST": "127.0.0.1",
        "TESSERA_LOG_LEVEL": "warn",
        "TESSERA_RATE_LIMIT": "false",
        # Short lifetimes so renewal, rotation and JWKS expiry happen within a test run.
        "TESSERA_ACCESS_TOKEN_TTL": "40s",
        "TESSERA_JWKS_MAX_AGE": "1s",
        "TESSERA_KEY_PREPUBLISH": "3s",
        "TESSERA_KEY_CHECK_INTERVAL": "1s",
    }


@pytest.fixture(scope="session")
def database_url():
    if not os.path.exists(CLI):
        pytest.fail(f"{CLI} is missing: run `npm run build` first")
    proc = subprocess.Popen([NODE, os.path.join(HERE, "pg_database.mjs")], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        pytest.fail("could not create a Postgres database for the tests (pg_database.mjs)")
    yield json.loads(line)["database_url"]
    proc.stdin.close()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def tessera(database_url):
    server_port = free_port()
    proxy = CountingProxy(server_port)
    env = _server_env(database_url, proxy.url)
    server = Server(env, server_port)
    server.start()
    t = Tessera(env, server, proxy)
    admin = t.cli("users", "create", "--email", "py-admin@example.com", "--name", "Py Admin")
    t.admin_token = t.cli("tokens", "create", "--user", admin["id"], "--scopes", "api,admin,quantum_tokens", "--name", "py")["token"]
    t.api_token = t.admin_token
    t.user_id = admin["id"]
    try:
        yield t
    finally:
        server.stop()
        proxy.close()


@pytest.fixture(autouse=True)
def _delete_sdk_keys(request):
    yield
    if "tessera" in request.fixturenames:
        request.getfixturevalue("tessera").delete_keys()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh home folder (the accounts file lives under it) and an environment without TESSERA_ variables."""
    for k in list(os.environ):
        if k.startswith("TESSERA_") or k.startswith("QPLAT_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TESSERA_KEYRING", "0")  # the file store, unless a test installs a keyring
    return tmp_path


class RecordingSleep:
    def __init__(self, real: bool = False) -> None:
        self.delays: List[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.real:
            time.sleep(seconds)


@pytest.fixture
def recording_sleep():
    return RecordingSleep()

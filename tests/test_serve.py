"""`his serve` for real: gunicorn in its own process on a free port, as `make run` starts it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HIS = str(Path(sys.executable).with_name("his"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None):
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _ready(base: str) -> bool:
    try:
        return _get(base + "/readyz")[0] == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def served(backend, fresh_database, tmp_path):
    databases = fresh_database(backend)
    url = next(databases)
    port = _free_port()
    env = {
        **os.environ,
        "HIS_ENV": "production",
        "HIS_SECRET_KEY": "k" * 48,
        "HIS_DATABASE_URL": url,
        "HIS_PORT": str(port),
        "HIS_MLLP_PORT": str(_free_port()),
        "HIS_COOKIE_SECURE": "false",
        "HIS_WEB_WORKERS": "1",
        "HIS_LOG_FORMAT": "json",
    }
    subprocess.run([HIS, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([HIS, "demo", "--if-empty"], env=env, check=True, capture_output=True)
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen([HIS, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        # Generous: on a busy machine a worker still importing the app lets the socket
        # accept and then answers nothing for seconds.
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert process.poll() is None, "his serve exited early"
            assert time.monotonic() < deadline, "his serve did not become ready in 60 s"
            time.sleep(0.2)
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
        databases.close()


def test_his_serve_answers_logins_and_logs_json(served):
    base, log = served
    status, body = _get(
        base + "/api/v1/auth/token",
        json.dumps({"username": "reception", "password": "demo"}).encode(),
    )
    assert status == 201
    assert body["token_type"] == "Bearer"
    status, body = _get(base + "/api/v1/nothing-here")
    assert status == 404
    assert body["status"] == 404
    log.flush()
    log.seek(0)
    lines = [json.loads(line) for line in log.read().splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "gunicorn.error" for line in lines)
    requests = [line for line in lines if line.get("event") == "request"]
    assert {r["path"] for r in requests} >= {"/readyz", "/api/v1/auth/token"}
    assert all(r["request_id"] for r in requests)

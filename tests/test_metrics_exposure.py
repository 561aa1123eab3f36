"""/metrics behind TLS with client certificates, or behind basic auth: a real daemon, real
TLS clients (certificates made by the openssl command line) and real HTTP requests."""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from support.daemons import Daemon, spawn_daemon, write_config

StartDaemon = Callable[[str, Path], Daemon]
PASSWORD = "metrics-Password-0123456789"


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extension: str) -> tuple[Path, Path]:
    key, request, cert = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(extension + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", request, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extensions)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from it."""
    directory = tmp_path_factory.mktemp("pki")
    ca = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", ca[1], "-out", ca[0], "-days", "2", "-subj", "/CN=hft test CA")
    server = _signed(directory, "server", ca, "subjectAltName=IP:127.0.0.1")
    client = _signed(directory, "client", ca, "extendedKeyUsage=clientAuth")
    return {"ca": ca[0], "server_cert": server[0], "server_key": server[1],
            "client_cert": client[0], "client_key": client[1]}


def _port(daemon: Daemon) -> int:
    with daemon.client() as client:
        return client.status().metrics_port


def _get(url: str, context: ssl.SSLContext | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _client_context(pki: dict[str, Path], with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    if with_certificate:
        context.load_cert_chain(pki["client_cert"], pki["client_key"])
    return context


def test_tls_with_a_client_certificate_is_served_and_everything_else_refused(
        start_daemon: StartDaemon, tmp_path: Path, pki: dict[str, Path]) -> None:
    daemon = start_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
[daemons.engine.metrics_tls]
certfile = "{pki['server_cert']}"
keyfile = "{pki['server_key']}"
client_cafile = "{pki['ca']}"
client_auth_required = true
"""))
    url = f"https://127.0.0.1:{_port(daemon)}/metrics"
    status, body = _get(url, _client_context(pki, with_certificate=True))
    assert status == 200 and "hft_daemon_info" in body
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _get(url, _client_context(pki, with_certificate=False))
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        _get(url.replace("https:", "http:"))
    assert _get(url, _client_context(pki, with_certificate=True))[0] == 200  # still serving


def test_basic_auth_refuses_a_wrong_or_missing_password(start_daemon: StartDaemon,
                                                        tmp_path: Path) -> None:
    password_file = tmp_path / "metrics.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    daemon = start_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
metrics_auth = {{ username = "prometheus", password_file = "{password_file}" }}
"""))
    url = f"http://127.0.0.1:{_port(daemon)}/metrics"

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    status, body = _get(url, headers=basic("prometheus", PASSWORD))
    assert status == 200 and "hft_daemon_info" in body
    assert _get(url)[0] == 401
    assert _get(url, headers=basic("prometheus", PASSWORD + "x"))[0] == 401
    assert _get(url, headers=basic("grafana", PASSWORD))[0] == 401
    assert daemon.stop() == 0
    assert PASSWORD not in daemon.stderr_path.read_text()


def test_a_password_file_others_can_read_is_refused_at_start(tmp_path: Path) -> None:
    password_file = tmp_path / "metrics.password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o644)
    daemon = spawn_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
metrics_auth = {{ username = "prometheus", password_file = "{password_file}" }}
"""))
    assert daemon.process.wait(timeout=20) == 1
    [error] = [line for line in daemon.logs() if line["message"] == "cannot start"]
    assert f"metrics password file {password_file} has mode 644" in error["error"]

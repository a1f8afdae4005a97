"""A real nginx (Debian's package) terminating TLS in front of the service, for tests.

What a hospital puts in front of the service: TLS on the proxy, the service at a path prefix
(``/cds/epidural``), plain http to the upstream, ``X-Forwarded-*`` set by the proxy. The test
generates a self-signed certificate for ``localhost``/``127.0.0.1`` with ``cryptography`` and
starts nginx in the foreground with a configuration in a temporary directory (pid file, logs and
temp paths there too), on two free loopback ports:

* ``pass_port``: the location passes the prefix through (``proxy_pass http://up;``);
* ``strip_port``: the location strips it (``proxy_pass http://up/;``) and says so in
  ``X-Forwarded-Prefix``.

nginx's master refuses nothing as root, but its workers then run as ``nobody``; the temporary
directory is made traversable for them. ``scripts/ensure-test-deps`` installs nginx.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PREFIX = "/cds/epidural"


def find_nginx() -> str:
    """The nginx binary (on PATH or Debian's /usr/sbin)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError("nginx is not installed; run scripts/ensure-test-deps (as root)")
    return found


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PROXY_HEADERS = """
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;"""


class NginxProxy:
    """nginx on two loopback ports in front of ``upstream_port``; a context manager."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.pass_port = 0
        self.strip_port = 0
        self.certificate = Path()
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, port: int, path: str = "") -> str:
        """``https://localhost:<port><path>``."""
        return f"https://localhost:{port}{path}"

    def _config(self, cert: Path, key: Path) -> str:
        tmp = self._tmp
        assert tmp is not None
        up = f"http://127.0.0.1:{self.upstream_port}"
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        return f"""
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    server {{
        listen 127.0.0.1:{self.pass_port} ssl;
        server_name localhost;
        location {PREFIX}/ {{
            proxy_pass {up};{_PROXY_HEADERS}
        }}
    }}
    server {{
        listen 127.0.0.1:{self.strip_port} ssl;
        server_name localhost;
        location {PREFIX}/ {{
            proxy_pass {up}/;{_PROXY_HEADERS}
            proxy_set_header X-Forwarded-Prefix {PREFIX};
        }}
    }}
}}
"""

    def __enter__(self) -> NginxProxy:
        binary = find_nginx()
        self._tmp = Path(tempfile.mkdtemp(prefix="epidural-nginx-"))
        self._tmp.chmod(0o755)
        cert, key = write_certificate(self._tmp)
        self.certificate = cert
        self.pass_port, self.strip_port = _free_port(), _free_port()
        conf = self._tmp / "nginx.conf"
        conf.write_text(self._config(cert, key))
        command = [
            binary,
            "-p",
            str(self._tmp),
            "-e",
            str(self._tmp / "error.log"),
            "-c",
            str(conf),
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.error_log()}")
            if all(_listening(port) for port in (self.pass_port, self.strip_port)):
                return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"nginx did not start:\n{self.error_log()}")

    def error_log(self) -> str:
        """nginx's error log so far."""
        if self._tmp is None or not (self._tmp / "error.log").exists():
            return ""
        return (self._tmp / "error.log").read_text(errors="replace")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0

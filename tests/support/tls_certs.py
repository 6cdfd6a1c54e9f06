"""Certificates made at test time with the ``openssl`` command: a CA, a server certificate for
``localhost``/127.0.0.1/::1, a client certificate the CA signed, and a self-signed ("rogue")
client certificate, each with its key (EC P-256: fast to make, fast to handshake)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Certs", "make_certs", "openssl"]


def openssl() -> str:
    """The openssl binary; missing, it fails under CI (scripts/test installs it) and skips
    elsewhere."""
    found = shutil.which("openssl")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("openssl is required under CI (scripts/test installs it)")
    pytest.skip("openssl is not installed")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(
        [openssl(), *args], cwd=cwd, check=True, capture_output=True, timeout=60, text=True
    )


def _key(cwd: Path, name: str) -> None:
    _run(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name, cwd=cwd
    )


def _signed(cwd: Path, name: str, subject: str, extensions: str) -> None:
    """NAME.key and NAME.pem, signed by ca.pem."""
    _key(cwd, f"{name}.key")
    _run("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _run(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@dataclass(frozen=True)
class Certs:
    """The files :func:`make_certs` wrote."""

    folder: Path

    def path(self, name: str) -> str:
        """The path of ``name`` (``server.pem``, ``client.key``...), as a string."""
        return str(self.folder / name)

    def client_context(
        self, cert: str | None = "client", maximum: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        """A client context that trusts the CA, presenting ``cert`` (``client``, ``rogue`` or
        None for no certificate)."""
        context = ssl.create_default_context(cafile=self.path("ca.pem"))
        if cert:
            context.load_cert_chain(self.path(f"{cert}.pem"), self.path(f"{cert}.key"))
        if maximum is not None:
            context.maximum_version = maximum
        return context


def make_certs(folder: Path) -> Certs:
    """Make the CA, server, client and rogue certificates in ``folder``; also ``other.key``
    (a key that matches nothing) and ``encrypted.key`` (passphrase ``secret``)."""
    folder.mkdir(parents=True, exist_ok=True)
    _key(folder, "ca.key")
    _run(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=monoceros test CA", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign,cRLSign",
        "-out", "ca.pem", cwd=folder,
    )  # fmt: skip
    _signed(
        folder,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n",
    )
    _signed(folder, "client", "/CN=nginx", "extendedKeyUsage=clientAuth\n")
    _key(folder, "rogue.key")
    _run(
        "req", "-x509", "-new", "-key", "rogue.key", "-subj", "/CN=rogue", "-days", "2",
        "-out", "rogue.pem", cwd=folder,
    )  # fmt: skip
    _key(folder, "other.key")
    _run(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256",
        "-pass", "pass:secret", "-out", "encrypted.key", cwd=folder,
    )  # fmt: skip
    return Certs(folder)

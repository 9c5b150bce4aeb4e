"""Certificates: a sandbox's self-signed one (issued by a CA of its own, so clients can
trust it without -k), kept aside whenever a real certificate is present."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .errors import DeployError
from .layout import Install

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def sandbox_ca(install: Install) -> Path:
    """The sandbox's own CA certificate (clients pass it as --cacert / cafile)."""
    return install.system("/etc/ssl/sandbox-ca.pem")


def has_certificate(install: Install) -> bool:
    return (install.cert_dir / "fullchain.pem").exists() and (install.cert_dir / "privkey.pem").exists()


def ensure_self_signed(install: Install) -> bool:
    """Issue a certificate for the site's names from the sandbox CA, unless one exists.
    Returns whether one was made."""
    if has_certificate(install):
        return False
    ca = sandbox_ca(install)
    ca_key = ca.with_suffix(".key")
    if not ca.exists():
        ca.parent.mkdir(parents=True, exist_ok=True)
        _openssl(
            [
                "req",
                "-x509",
                *EC_KEY,
                "-days",
                "3650",
                "-subj",
                f"/CN={install.site} sandbox CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                ca_key,
                "-out",
                ca,
            ]
        )
        ca_key.chmod(0o600)
    install.cert_dir.mkdir(parents=True, exist_ok=True)
    key = install.cert_dir / "privkey.pem"
    names = ",".join(f"DNS:{name}" for name in install.server_names)
    with tempfile.TemporaryDirectory() as tmp:
        csr = Path(tmp) / "site.csr"
        _openssl(
            [
                "req",
                "-new",
                *EC_KEY,
                "-subj",
                f"/CN={install.site}",
                "-addext",
                f"subjectAltName={names}",
                "-keyout",
                key,
                "-out",
                csr,
            ]
        )
        key.chmod(0o600)
        _openssl(
            [
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                ca,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-CAserial",
                Path(tmp) / "serial",
                "-days",
                "90",
                "-copy_extensions",
                "copy",
                "-out",
                install.cert_dir / "fullchain.pem",
            ]
        )
    return True


def _openssl(args: list[object]) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeployError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

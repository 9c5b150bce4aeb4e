"""Certificates: which one the site serves, and a sandbox's self-signed one (issued by a
CA of its own, so clients can trust it without -k) for as long as certbot has issued none.

The self-signed files live in their own folder (Install.self_signed_dir), never in
certbot's live/<site>/: certbot refuses to create a lineage where that folder has files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import proc
from .layout import Install

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def sandbox_ca(install: Install) -> Path:
    """The sandbox's own CA certificate (clients pass it as --cacert / cafile)."""
    return install.system("/etc/ssl/sandbox-ca.pem")


def _complete(folder: Path) -> bool:
    return (folder / "fullchain.pem").exists() and (folder / "privkey.pem").exists()


def issued(install: Install) -> bool:
    """Whether certbot has a certificate for the site in live/<site>/."""
    return _complete(install.cert_dir)


def site_cert_dir(install: Install) -> Path:
    """The folder the HTTPS site takes its certificate from: certbot's live/<site>/, or in
    a sandbox where certbot has issued none yet, the self-signed one."""
    if install.sandbox and not issued(install):
        return install.self_signed_dir
    return install.cert_dir


def has_certificate(install: Install) -> bool:
    """Whether the HTTPS site can be loaded: its certificate files exist."""
    return _complete(site_cert_dir(install))


def ensure_self_signed(install: Install) -> bool:
    """Issue a certificate for the site's names from the sandbox CA, unless the site already
    has one (self-signed earlier, or issued by certbot). Returns whether one was made."""
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
    folder = install.self_signed_dir
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "privkey.pem"
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
                folder / "fullchain.pem",
            ]
        )
    return True


def _openssl(args: list[object]) -> None:
    proc.run(["openssl", *map(str, args)], f"openssl {args[0]}")

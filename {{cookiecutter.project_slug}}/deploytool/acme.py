"""`deploytool cert`: a Let's Encrypt certificate for the install's site, over ACME (certbot).

1. the bootstrap site on port 80 (the ACME challenge, no certificate) is enabled and nginx
   reloaded; a probe token proves nginx serves the challenge folder before the CA is asked;
2. `certbot certonly` with the site's own settings file (webroot, unattended) for its names,
   as lineage live/<site>/;
3. the final HTTPS site, now pointing at live/<site>/, replaces the bootstrap site:
   `nginx -t`, reload, and a check that nginx presents the new certificate.

Any failure puts the previously enabled site back (files and links as they were) and
reloads, so nginx keeps serving what it served before. A re-run while the final site
already serves a certbot certificate skips step 1: that site answers the challenge on port
80 too, and HTTPS stays up. Renewal is certbot's own timer: `certbot renew` runs the deploy
hook in renewal-hooks/deploy/, which tests and reloads nginx.
"""

from __future__ import annotations

import argparse
import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import nginx, probe, proc
from .certificates import issued, site_cert_dir
from .errors import DeployError
from .files import write_atomic
from .install import ROOT_COPIES, trusted_code
from .layout import CODE_ROOT, Install
from .render import outputs, render, render_all

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Rendered files `cert` puts in place itself (`install` does too): what steps 1 and 2 use.
TEMPLATES = (
    "nginx/acme.conf.j2",
    "nginx/app.conf.j2",
    "nginx/letsencrypt.conf.j2",
    "letsencrypt/cli.ini.j2",
    "letsencrypt/deploy-hook.sh.j2",
)
FINAL_TEMPLATE = "nginx/site.conf.j2"
CERTBOT_TIMEOUT = 300  # s; the ACME client's own timeouts are shorter


@dataclass(frozen=True)
class Request:
    """What the command line asks for; the defaults issue from Let's Encrypt."""

    server: str | None = None
    ca_bundle: Path | None = None
    www: bool = True
    email: str | None = None


def names(install: Install, www: bool = True) -> list[str]:
    """The certificate's names: the site's server names (pro: domain and www), or only
    the site itself."""
    return install.server_names if www else [install.site]


def validate(request: Request) -> None:
    if request.server is not None:
        url = urllib.parse.urlsplit(request.server)
        if url.scheme != "https" or not url.netloc:
            raise DeployError(
                f"--server {request.server!r} is not the https:// URL of an ACME directory: "
                f"e.g. {STAGING} (Let's Encrypt staging)"
            )
    if request.ca_bundle is not None:
        try:
            text = request.ca_bundle.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise DeployError(
                f"--ca-bundle {request.ca_bundle}: cannot read it ({error}): give the PEM file of "
                "the CA that signed the ACME server's HTTPS certificate"
            ) from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise DeployError(
                f"--ca-bundle {request.ca_bundle} holds no PEM certificate: give the PEM file of "
                "the CA that signed the ACME server's HTTPS certificate"
            )
    if request.email is not None and ("@" not in request.email or " " in request.email.strip()):
        raise DeployError(f"--email {request.email!r} is not an e-mail address: give one like ops@example.org")


def cli_ini(install: Install) -> Path:
    """certbot's settings for this site, as installed: a file of the site's own, passed with
    --config. The host-wide /etc/letsencrypt/cli.ini stays the host's (every certificate
    and every project on the host reads it)."""
    return install.letsencrypt_dir / f"{install.site}.ini"


def certbot_log(install: Install) -> Path:
    return install.system("/var/log/letsencrypt/letsencrypt.log")


def cert(install: Install, request: Request) -> Iterator[str]:
    """Run the three steps; yields one line per step done. Raises DeployError with nginx
    back on its previous config when a step fails."""
    validate(request)
    certbot = proc.program("certbot")
    if not install.sandbox and os.geteuid() != 0:
        raise DeployError(
            "cert writes /etc/letsencrypt and reloads the system's nginx: run it as root, from root's own "
            f"copy of the project: {ROOT_COPIES}/{install.site}/bin/deploytool --root {install.root} cert"
        )
    if not nginx.running(install):
        start = f"{install.deploytool} up" if install.sandbox else "systemctl start nginx"
        raise DeployError(f"nginx is not running, so nothing would answer the CA on port 80: {start}, then cert again")
    if os.geteuid() != 0:
        render(install)  # the user's own copies in etc/ follow (root writes nothing in the checkout)
    final, bootstrap = install.final_site, install.bootstrap_site
    before = nginx.enabled_sites(install)
    # Everything of nginx's config that the steps change, as it is now.
    saved = nginx.Saved(
        [
            *(install.site_enabled(name) for name in install.sites),
            *(install.site_available(name) for name in install.sites),
            install.nginx_dir / "snippets" / "acme.conf",
            install.nginx_dir / "snippets" / f"{install.site}_app.conf",
        ]
    )
    served_before = probe.first_certificate(site_cert_dir(install) / "fullchain.pem")
    try:
        _put_in_place(install, TEMPLATES)
        if before == [final] and issued(install):
            yield f"1/3 bootstrap site not needed: {final} serves the ACME challenge on port 80, HTTPS stays up"
        else:
            nginx.enable(install, bootstrap)
            nginx.reload(install)
            yield f"1/3 enabled {bootstrap} (port 80: the ACME challenge only, no certificate); nginx reloaded"
        _wait_for_challenge(install)
        yield f"2/3 {_certbot(install, certbot, request)}"
        if os.geteuid() != 0:
            render(install)
        _put_in_place(install, (FINAL_TEMPLATE,))  # rendered now: it points at live/<site>/
        nginx.enable(install, final)
        nginx.reload(install)
        # what the project user's deploys check the site with (certbot's live/ is root's)
        write_atomic(install.issuer_file, (install.cert_dir / "chain.pem").read_text(), 0o644)
        live = probe.first_certificate(install.cert_dir / "cert.pem")
        if not proc.poll(lambda: probe.served_certificate(install, install.site) == live):
            raise DeployError(
                f"nginx was reloaded but does not present {install.cert_dir}/cert.pem on port "
                f"{install.https_port} within 10 s: see {install.log_dir}/nginx.error.log"
            )
        yield f"3/3 enabled {final}; nginx serves {describe(install.cert_dir / 'cert.pem')}"
    except DeployError as error:
        raise DeployError(f"{_one_line(str(error))}; {_restore(install, saved, before, served_before)}") from None
    except BaseException:
        _restore(install, saved, before, served_before)
        raise


def _put_in_place(install: Install, templates: tuple[str, ...]) -> None:
    """Render configs from the code that runs (root's own copy on a server, never the user's
    checkout) and write them to their places under the system root (etc/ mirrors /etc)."""
    paths, texts = outputs(install), render_all(install)
    for template in templates:
        text, mode = texts[paths[template]]
        write_atomic(install.system("/etc") / paths[template].relative_to(install.etc_dir), text, mode)


def _wait_for_challenge(install: Install) -> None:
    seen = ""

    def served() -> bool:
        nonlocal seen
        seen = nginx.challenge_answer(install)
        return seen == "ok"

    if not proc.poll(served, timeout=3):  # the reload has taken effect already
        raise DeployError(
            f"nginx does not serve the ACME challenge folder {install.acme_webroot}: "
            f"http://{install.site}/.well-known/acme-challenge/<probe> on 127.0.0.1:{install.http_port} "
            f"answered {seen!r}; the enabled site must include snippets/acme.conf on port 80"
        )


def _certbot(install: Install, certbot: str, request: Request) -> str:
    """certbot certonly for the site's names; returns what happened, in one line."""
    domains = names(install, request.www)
    argv = [certbot, "certonly", "--config", str(cli_ini(install)), "--cert-name", install.site]
    for name in domains:
        argv += ["-d", name]
    if request.server:
        argv += ["--server", request.server]
    if request.email:
        argv += ["--email", request.email]
    env = dict(os.environ)
    if request.ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = str(request.ca_bundle.resolve())
    started = time.monotonic()
    try:
        done = proc.attempt(argv, env=env, timeout=CERTBOT_TIMEOUT)
    except DeployError:
        raise DeployError(
            f"certbot did not finish within {CERTBOT_TIMEOUT} s (is {request.server or 'the ACME server'} "
            f"reachable?): see {certbot_log(install)}"
        ) from None
    said = done.stdout + done.stderr
    if done.returncode != 0 or not issued(install):
        raise DeployError(
            f"certbot could not get a certificate for {', '.join(domains)}: "
            f"{certbot_problem(said)} (see {certbot_log(install)})"
        )
    elapsed = time.monotonic() - started
    if "not yet due for renewal" in said:
        return f"certbot kept the certificate in {install.cert_dir} (not due for renewal)"
    return f"certbot issued a certificate for {', '.join(domains)} into {install.cert_dir} in {elapsed:.1f} s"


def certbot_problem(output: str) -> str:
    """certbot's reason for a failure, in one line: the CA's report for each name when
    there is one, else certbot's last words."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    report = [line for line in lines if line.startswith(("Domain:", "Type:", "Detail:"))]
    if report:
        problem = " ".join(report)
        if any("download" in line for line in lines if line.startswith("Hint:")):
            problem = "the CA could not fetch the challenge from this server over port 80: " + problem
        return problem
    noise = ("Ask for help", "See the logfile", "Saving debug log", "Some challenges have failed")
    useful = [line for line in lines if not line.startswith(noise)]
    return useful[-1] if useful else "no output"


def describe(cert_pem: Path) -> str:
    """A certificate as an operator checks it: serial, expiry, names (openssl)."""
    shown = proc.attempt(
        ["openssl", "x509", "-in", cert_pem, "-noout", "-serial", "-enddate", "-ext", "subjectAltName"]
    )
    if shown.returncode != 0:
        return f"{cert_pem}"
    fields = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    sans = [
        part.strip().removeprefix("DNS:")
        for line in shown.stdout.splitlines()
        if "DNS:" in line
        for part in line.split(",")
    ]
    return f"serial {fields.get('serial', '?')}, valid until {fields.get('notAfter', '?')}, for {', '.join(sans)}"


def _restore(install: Install, saved: nginx.Saved, before: list[str], served_before: bytes | None) -> str:
    """Put nginx's previous config back and reload; returns what the user should know."""
    what = ", ".join(before) if before else "no site of this install"
    try:
        saved.restore()
        if nginx.running(install):
            nginx.reload(install)
            if install.final_site in before and served_before is not None:
                proc.poll(lambda: probe.served_certificate(install, install.site) == served_before)
            elif install.bootstrap_site in before:
                proc.poll(lambda: nginx.challenge_answer(install) == "ok")
    except DeployError as error:
        return f"putting back the previous nginx config ({what}) failed too: {_one_line(str(error))}"
    return f"nginx serves its previous config again ({what} enabled)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="ACME directory URL (default Let's Encrypt; staging or a private CA)")
    parser.add_argument("--ca-bundle", type=Path, help="PEM file trusted for the ACME server's HTTPS (a private CA)")
    parser.add_argument("--no-www", dest="www", action="store_false", help="leave the www name out (pro)")
    parser.add_argument("--email", help="account e-mail for expiry notices (default: the answers' certbot_email)")


def run(args: argparse.Namespace) -> int:
    request = Request(args.server, args.ca_bundle, args.www, args.email)
    if os.geteuid() == 0:
        # as for the system part: root's own copy of the code, the user's checkout as data
        install = Install.for_root(CODE_ROOT, args.root, Path("/"))
        trusted_code(install)
    else:
        install = Install.load(args.root)
    for line in cert(install, request):
        print(line, flush=True)
    renewal = "certbot renew, by hand" if install.sandbox else "certbot.timer renews it"
    print(f"next: {install.url} serves it; {renewal} (renewal-hooks/deploy/{install.site}.sh reloads nginx)")
    return 0

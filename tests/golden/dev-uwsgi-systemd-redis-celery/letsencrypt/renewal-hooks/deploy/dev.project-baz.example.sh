#!/usr/bin/env bash
# dev.project-baz.example (dev install): certbot deploy hook (test and reload nginx after a renewal).
# Rendered by `deploytool render` from etc/templates/letsencrypt/deploy-hook.sh.j2: edit the template, not this file.
# certbot runs every file in renewal-hooks/deploy/ after it renews a certificate (any
# certificate: reloading for another site's costs nothing). nginx holds the old
# certificate in memory until it reloads; a reload starts new workers and lets the old
# ones finish their requests, so nobody is cut off. A broken config is never loaded: the
# test comes first, and the old config keeps serving while the hook fails loudly.
set -euo pipefail

# certbot's timer may run hooks with a PATH that lacks the sbin folders nginx lives in.
export PATH="${PATH}:/usr/sbin:/sbin"

# nginx -s prints a notice even on success, which certbot would log as "error output":
# show a command's output only when it fails.
quietly() {
    local output
    if ! output=$("$@" 2>&1); then
        printf '%s\n' "${output}" >&2
        return 1
    fi
}

# The renewed certificate's issuer, where the project user's deploy finds it to check the
# site over HTTPS (certbot's live/ is root's alone; certificates are public).
if [[ ${RENEWED_LINEAGE:-} == /etc/letsencrypt/live/dev.project-baz.example ]]; then
    install -D -m 0644 "${RENEWED_LINEAGE}/chain.pem" /etc/ssl/dj-layout/dev.project-baz.example.issuer.pem
fi

if ! nginx -t -q; then
    echo "dev.project-baz.example: nginx -t failed: not reloading (fix the config, then reload)" >&2
    exit 1
fi
# systemd when it runs the machine (it then tracks nginx), nginx's own signal otherwise.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl reload nginx
else
    quietly nginx -s reload
fi

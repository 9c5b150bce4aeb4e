#!/usr/bin/env bash
# The control script's first name, kept so that habits, notes and older units go on
# working: bin/appctl.sh drives the app server, uWSGI or gunicorn. Same commands, same
# exit statuses.
set -euo pipefail
exec "$(dirname -- "${BASH_SOURCE[0]}")/appctl.sh" "$@"

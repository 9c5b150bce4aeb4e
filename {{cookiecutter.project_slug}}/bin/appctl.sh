#!/usr/bin/env bash
# Start, stop and reload this install's app server (uWSGI or gunicorn, see etc/env.conf).
#
#   bin/appctl.sh start|stop|restart|reload|status|run
#
# Run it as the project user, never as root: as root the pid file, the master FIFO and new
# log files would belong to root, and the app, which runs as the user, could no longer
# write them.
#
# How manual use and the process manager agree:
# - The systemd unit (ExecStart=) and the supervisor program (command=) run
#   `bin/appctl.sh run`, which execs the app server in the foreground, as the project
#   user: the manager watches the app server itself, and the same config is used by hand.
# - `stop` asks for a graceful stop (uWSGI: master FIFO `q`; gunicorn: TERM) and waits
#   until the process is gone. Both exit with status 0 then, which the managers treat as
#   a normal stop (systemd Restart=on-failure, supervisor autorestart=unexpected with
#   exitcodes=0): a manual stop stays stopped. A crash (non-zero status, kill -9) is
#   restarted. The systemd unit also uses `stop` as ExecStop, so `systemctl stop` is the
#   same graceful stop.
# - `start` by hand hands over to the manager when there is one: on a server under systemd
#   it starts the unit (`systemctl start`, which the system part's polkit rule allows the
#   project user for this one unit); under supervisor it asks the install's own supervisord
#   (etc/supervisor/supervisord.conf, the project user's, run by the system's supervisord
#   or by `up`). Without one it runs the same `run` detached from the terminal and waits
#   until it serves; that process lives outside any manager until the manager's next
#   start: `run` under a manager stops a hand-started instance gracefully and takes over,
#   so there is never a second instance.
# - `reload` is graceful and keeps the master's pid, so the manager never notices it:
#   use it for new code and config. `restart` is `stop` then `start`, so by hand it leaves
#   a hand-started server; under a manager restart through it (systemctl/supervisorctl).
#
# Exit status: 0 done; 1 failed; 2 usage; status: 0 running, 1 dead with a pid file left,
# 3 stopped (LSB); reload when not running: 7 (LSB "program is not running").
set -euo pipefail
# Everything the app server and this script create (logs, uploads, pid files) is closed to
# other local accounts: the project user's group at most.
umask 0027

readonly COMMANDS="start stop restart reload status run reopen-logs"
SELF=$(basename -- "${BASH_SOURCE[0]}")
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
ENV_CONF="$ROOT/etc/env.conf"
# say, die, wait_until, pid_status, under_systemd, under_supervisor
# shellcheck source-path=SCRIPTDIR source=ctl-common.sh
source "$ROOT/bin/ctl-common.sh"
# Seconds to wait for a start, a graceful stop and a reload. A stop must outlast the
# app server's own grace period (uWSGI worker-reload-mercy, gunicorn graceful_timeout: 30).
START_TIMEOUT=${APPCTL_START_TIMEOUT:-60}
STOP_TIMEOUT=${APPCTL_STOP_TIMEOUT:-45}

usage() {
    cat <<EOF
usage: $SELF COMMAND

Controls this install's app server, as the project user (never as root).

commands:
  start    start it in the background and wait until it serves (no-op when running)
  stop     stop it gracefully and wait until it is gone (no-op when stopped)
  restart  stop, then start
  reload   graceful reload: new code, no request lost, same master pid
  status   print whether it runs and its pid (exit 0 running, 3 stopped)
  run      run it in the foreground (what the systemd unit and supervisor run)
  reopen-logs  make it reopen its log files (logrotate's postrotate runs this as the user)
EOF
}


refuse_root() {
    ((EUID != 0)) && return 0
    # Read the user without sourcing env.conf: a file the user writes is never run as root.
    local user=""
    if [[ -r $ENV_CONF ]]; then
        user=$(sed -n 's/^PROJECT_USER=//p' "$ENV_CONF" | tr -d "'\"")
    fi
    [[ -n $user ]] || user=$(stat -c %U "$ROOT")
    die 1 "refusing to run as root: the pid file, FIFO and logs would then belong to root" \
        "and the app server, which runs as '$user', could not write them." \
        "Run it as the project user: runuser -u $user -- $0 $*"
}

load_env() {
    if [[ ! -f $ENV_CONF ]]; then
        die 1 "$ENV_CONF is missing: this checkout is not an install yet." \
            "Run: cd $ROOT && bin/deploytool init --install-type dev|stage|pro"
    fi
    # shellcheck source=/dev/null
    source "$ENV_CONF"
    local key
    for key in PROJECT_ROOT PROJECT_USER SYSTEM_ROOT SERVICE APP_SERVER VENV APP_CONFIG \
        LOG_DIR RUN_DIR PIDFILE PORT_APP APP_LOG WSGI_APP; do
        [[ -n ${!key:-} ]] || die 1 "$ENV_CONF has no $key: run bin/deploytool render"
    done
    if [[ $(cd -- "$PROJECT_ROOT" 2>/dev/null && pwd -P) != "$ROOT" ]]; then
        die 1 "$ENV_CONF belongs to $PROJECT_ROOT, not to this checkout ($ROOT):" \
            "run bin/deploytool init here"
    fi
    # On a server only the project user runs the install; a sandbox (SYSTEM_ROOT is a
    # folder) runs as whoever made it.
    local me
    me=$(id -un)
    if [[ $SYSTEM_ROOT == / && $me != "$PROJECT_USER" ]]; then
        die 1 "running as '$me': run it as the project user: sudo -u $PROJECT_USER $0 $*"
    fi
    case $APP_SERVER in
        uwsgi | gunicorn) ;;
        *) die 1 "APP_SERVER=$APP_SERVER in $ENV_CONF: expected uwsgi or gunicorn" ;;
    esac
    SERVER_BIN="$PROJECT_ROOT/$VENV/bin/$APP_SERVER"
    PYTHON="$PROJECT_ROOT/$VENV/bin/python"
    # Marks when the running master last read its config: reload compares it with APP_CONFIG.
    CONFIG_STAMP="$RUN_DIR/$APP_SERVER.config-loaded"
    # supervisor installs: the install's own supervisord, which runs the app server
    SUPERVISOR_CONF="$ROOT/etc/supervisor/supervisord.conf"
}

# The pid of the running app server master, if the pid file names a live process of this
# install: ours (signals reach it) and working in this install root (a recycled pid that
# now belongs to something else, or a zombie, does not count).
running_pid() {
    local pid
    [[ -r $PIDFILE ]] || return 1
    read -r pid <"$PIDFILE" || [[ -n ${pid:-} ]] || return 1
    [[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# Is pid a live process of this install: its working directory is the checkout. A process
# in the unit's own user namespace (systemd's PrivateUsers=) hides its cwd from the user
# outside; then its command line tells: uWSGI's names the site ("<site> uWSGI master",
# uwsgi.yaml's procname), gunicorn's names this install's config.
alive() {
    local cwd args
    if cwd=$(readlink "/proc/$1/cwd" 2>/dev/null); then
        [[ $cwd == "$ROOT" ]]
        return
    fi
    args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ $args == "$SITE uWSGI master "* || " $args" == *" $APP_CONFIG "* ]]
}

# Child pids of the master (its workers), on one line.
workers() { pgrep -P "$1" | tr '\n' ' ' || true; }

# Is any pid of the list $1 still in the list $2?
any_left() {
    local pid
    for pid in $1; do
        [[ " $2 " == *" $pid "* ]] && return 0
    done
    return 1
}

# Is something listening on the app's socket (APP_SOCKET) or port (PORT_APP, with APP_BIND)?
# Read from /proc: connecting would log a bad request.
listening() {
    if [[ -n ${APP_SOCKET:-} ]]; then
        # /proc/net/unix: flags 00010000 is a listening socket; the path is the last field.
        awk -v path="$APP_SOCKET" '$4 == "00010000" && $NF == path { found = 1 } END { exit !found }' /proc/net/unix
        return
    fi
    local port table tables=()
    port=$(printf '%04X' "$PORT_APP")
    for table in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $table ]] && tables+=("$table")
    done
    awk -v port=":$port" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
        END { exit !found }' "${tables[@]}"
}

# Ready to serve? Listening alone says little: the workers load the app after the bind.
# gunicorn: a worker runs. uWSGI: its stats server lists every worker with the app loaded.
apps_loaded() {
    if [[ $APP_SERVER == gunicorn ]]; then
        [[ -n $(workers "$1") ]]
        return
    fi
    [[ -n ${STATS_SOCKET:-} ]] || return 0
    [[ -S $STATS_SOCKET ]] || return 1
    local stats
    # uWSGI's own client: bash cannot open a unix socket.
    stats=$(timeout 2 "$SERVER_BIN" --connect-and-read "$STATS_SOCKET" 2>&1) || return 1
    stats=${stats//[[:space:]]/}
    [[ $stats == *'"apps":[{'* && $stats != *'"apps":[]'* && $stats != *'"accepting":0'* ]]
}

# Write a command to the uWSGI master FIFO. Bounded: opening a FIFO blocks until a reader
# (the master) has it open, and nothing reads a dead master's FIFO.
fifo_write() {
    [[ -p ${MASTER_FIFO:-} ]] || return 1
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the child shell
    timeout 5 bash -c 'printf %s "$2" >"$1"' _ "$MASTER_FIFO" "$1"
}

check_dirs() {
    [[ -z ${APP_SOCKET:-} || (-d $SOCKET_DIR && -w $SOCKET_DIR) ]] || die 1 "socket dir $SOCKET_DIR is missing" \
        "or not writable by $(id -un): it is made at boot by tmpfiles.d; make it now with:" \
        "sudo systemd-tmpfiles --create /etc/tmpfiles.d/$SITE.conf (deploytool install installs that file)"
    [[ -d $RUN_DIR && -w $RUN_DIR ]] || die 1 "run dir $RUN_DIR is missing or not writable by" \
        "$(id -un): it is made at boot by tmpfiles.d; make it now with:" \
        "sudo systemd-tmpfiles --create /etc/tmpfiles.d/$SITE.conf (bin/deploytool install installs that file)"
    [[ -d $LOG_DIR && -w $LOG_DIR ]] || die 1 "log dir $LOG_DIR is missing or not writable by" \
        "$(id -un): bin/deploytool install makes it"
    [[ -x $SERVER_BIN ]] || die 1 "$SERVER_BIN is missing: install the requirements into the" \
        "virtualenv: $PYTHON -m pip install -r $PROJECT_ROOT/requirements.txt"
    [[ -f $APP_CONFIG ]] || die 1 "$APP_CONFIG is missing: run bin/deploytool render"
}

log_tail() { tail -n 20 "$APP_LOG" 2>/dev/null | sed 's/^/    /' >&2 || true; }


gone() { ! alive "$1"; }
loaded_or_gone() { apps_loaded "$1" || gone "$1"; }
# The server started as this pid serves: it wrote its pid file, listens, has the app loaded.
serving() {
    local pid
    pid=$(running_pid) && [[ $pid == "$1" ]] && listening && apps_loaded "$pid"
}
serving_or_gone() { serving "$1" || gone "$1"; }
serving_any() {
    local pid
    pid=$(running_pid) && serving "$pid"
}
# After a reload: new workers run, no old one (of the list $2) is left, the app is loaded.
reloaded() {
    local now
    now=$(workers "$1")
    [[ -n ${now// /} ]] && ! any_left "$2" "$now" && apps_loaded "$1"
}
reloaded_or_gone() { reloaded "$1" "$2" || gone "$1"; }

# Ask the running master to stop gracefully; wait until it is gone.
stop_pid() {
    local pid=$1
    if [[ $APP_SERVER == uwsgi ]]; then
        # A worker stopped while it imports the app (lazy-apps) makes need-app end uWSGI
        # with status 22, which a manager reads as a crash: let a start finish first.
        wait_until "$START_TIMEOUT" loaded_or_gone "$pid" || true
        # uWSGI 2.0: FIFO `q` lets the workers finish their requests; INT (and QUIT) kill
        # them at once, so INT only when there is no FIFO to write to.
        fifo_write q || kill -INT "$pid"
    else
        kill -TERM "$pid" # gunicorn: TERM is its graceful stop
    fi
    wait_until "$STOP_TIMEOUT" gone "$pid" ||
        die 1 "$APP_SERVER (pid $pid) is still running after ${STOP_TIMEOUT}s of graceful" \
            "stop; see $APP_LOG. To end it at once: kill -INT $pid (then kill -KILL $pid)"
}

cmd_status() { pid_status "$SERVICE: $APP_SERVER" "$PIDFILE"; }


# systemctl VERB the unit as the project user; false when polkit does not allow it.
through_systemd() {
    local out
    if out=$(systemctl --no-ask-password "$1" "$SERVICE.service" 2>&1); then
        return 0
    fi
    say "systemctl $1 $SERVICE as $(id -un) was refused ($out): as root, systemctl $1 $SERVICE" >&2
    return 1
}


cmd_start() {
    check_dirs
    local pid
    if pid=$(running_pid); then
        say "$SERVICE: $APP_SERVER is already running (pid $pid)"
        return 0
    fi
    if under_supervisor "$SERVICE"; then
        local out
        # waits startsecs (5 s), until supervisord counts the program as started
        out=$(supervisorctl -c "$SUPERVISOR_CONF" start "$SERVICE" 2>&1) ||
            die 1 "supervisorctl start $SERVICE failed ($out); see $LOG_DIR/supervisor-$APP_SERVER.log"
        wait_until "$START_TIMEOUT" serving_any ||
            die 1 "$SERVICE started under supervisor, but $APP_SERVER does not serve; see $APP_LOG"
        pid=$(running_pid)
        say "$SERVICE: $APP_SERVER started under supervisor (pid $pid, ${APP_SOCKET:-port $PORT_APP})"
        return 0
    fi
    if under_systemd "$SERVICE"; then
        through_systemd start || return 1
        pid=$(running_pid) || die 1 "$SERVICE started, but no $APP_SERVER answers: systemctl status $SERVICE"
        say "$SERVICE: $APP_SERVER started under systemd (pid $pid, ${APP_SOCKET:-port $PORT_APP})"
        return 0
    fi
    rm -f -- "$PIDFILE" # stale: its process is gone
    # setsid: own session, no terminal, so closing the shell does not hang it up. Whatever
    # the server prints before it opens its own log goes to that log.
    setsid "$ROOT/bin/$SELF" run </dev/null >>"$APP_LOG" 2>&1 &
    local child=$! status
    if ! wait_until "$START_TIMEOUT" serving_or_gone "$child"; then
        say "$APP_SERVER (pid $child) is not serving after ${START_TIMEOUT}s; the end of $APP_LOG:" >&2
        log_tail
        return 1
    fi
    if gone "$child"; then
        wait "$child" && status=0 || status=$?
        say "$APP_SERVER failed to start (exit status $status); the end of $APP_LOG:" >&2
        log_tail
        return 1
    fi
    pid=$child
    say "$SERVICE: $APP_SERVER started (pid $pid, ${APP_SOCKET:-port $PORT_APP}), by hand: outside the" \
        "${PROCESS_MANAGER:-process manager} service until its next start"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f -- "$PIDFILE"
        say "$SERVICE: $APP_SERVER is not running"
        return 0
    fi
    if under_systemd "$SERVICE" && systemctl is-active --quiet "$SERVICE.service"; then
        through_systemd stop || return 1 # its ExecStop is this script's graceful stop
        say "$SERVICE: $APP_SERVER stopped (pid $pid) through systemd: $0 start starts it there again"
        return 0
    fi
    stop_pid "$pid"
    say "$SERVICE: $APP_SERVER stopped (pid $pid)"
}

# The new code must import before the running workers are replaced: a reload into code
# that does not import would take the whole instance down (uWSGI need-app exits, gunicorn
# halts on a worker boot error). This way the old code keeps serving.
preflight() {
    local out
    if ! out=$(cd -- "$PROJECT_ROOT" && "$PYTHON" -c '
import importlib, sys
module, _, name = sys.argv[1].partition(":")
getattr(importlib.import_module(module), name or "application")
if "django" in sys.modules:  # Django imports the URLconf (every view) only on a first request
    from django.urls import get_resolver
    get_resolver().url_patterns
' "$WSGI_APP" 2>&1); then
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        die 1 "$WSGI_APP does not import (above): not reloading, the running code keeps serving"
    fi
}

cmd_reload() {
    local pid
    pid=$(running_pid) || die 7 "$SERVICE: $APP_SERVER is not running: start it with $0 start"
    check_dirs
    preflight
    local before how
    before=$(workers "$pid")
    if [[ $APP_SERVER == gunicorn ]]; then
        kill -HUP "$pid" # re-reads gunicorn.conf.py, new workers, old ones finish gracefully
        how="graceful reload"
    elif [[ ! -e $CONFIG_STAMP || $APP_CONFIG -nt $CONFIG_STAMP ]]; then
        # uwsgi.yaml changed since the master read it: HUP re-executes the master, which
        # re-reads it; the listen socket stays open, requests wait in its backlog.
        kill -HUP "$pid"
        touch -- "$CONFIG_STAMP"
        how="graceful reload with $(basename -- "$APP_CONFIG") re-read"
    else
        # Chain reload (needs lazy-apps): one worker at a time, the others keep serving.
        fifo_write c ||
            die 1 "could not write to the master FIFO $MASTER_FIFO: is $APP_SERVER (pid $pid) hung?"
        how="chain reload"
    fi
    # Done when no old worker is left and new ones run (the master's pid never changes).
    wait_until "$START_TIMEOUT" reloaded_or_gone "$pid" "$before" ||
        die 1 "$APP_SERVER (pid $pid): old workers still running ${START_TIMEOUT}s after the $how; see $APP_LOG"
    if gone "$pid"; then
        log_tail
        die 1 "$APP_SERVER (pid $pid) exited during the reload; the end of $APP_LOG is above"
    fi
    say "$SERVICE: $APP_SERVER reloaded ($how, pid $pid)"
}

cmd_run() {
    check_dirs
    local pid
    if pid=$(running_pid); then
        # systemd sets INVOCATION_ID, supervisord SUPERVISOR_ENABLED: under a manager the
        # manager owns the service, so a hand-started instance is stopped and replaced.
        if [[ -n ${INVOCATION_ID:-} || -n ${SUPERVISOR_ENABLED:-} ]]; then
            say "stopping the $APP_SERVER started by hand (pid $pid): the ${PROCESS_MANAGER:-process manager}" \
                "service takes over"
            stop_pid "$pid"
        else
            die 1 "$SERVICE: $APP_SERVER is already running (pid $pid): stop it first: $0 stop"
        fi
    fi
    rm -f -- "$PIDFILE"
    cd -- "$PROJECT_ROOT"
    touch -- "$CONFIG_STAMP"
    if [[ $APP_SERVER == uwsgi ]]; then
        # touch-logreopen watches this file: logrotate touches it, uWSGI reopens its log.
        # Made as the user here (logrotate's postrotate runs as root and only touches it).
        [[ -z ${LOGREOPEN:-} || -e $LOGREOPEN ]] || touch -- "$LOGREOPEN"
        exec "$SERVER_BIN" --yaml "$APP_CONFIG"
    fi
    exec "$SERVER_BIN" --config "$APP_CONFIG"
}

# After logrotate renamed the logs: the running server opens new files. uWSGI: FIFO `l`
# (not only touch-logreopen: it compares whole seconds and misses a touch in the second
# the server started; HUP would reload the app). gunicorn: USR1. The install's own
# supervisord (supervisor installs) reopens its log and the app's output file on USR2.
cmd_reopen_logs() {
    local pid
    if [[ ${PROCESS_MANAGER:-} == supervisor ]] && read -r pid <"$RUN_DIR/supervisord.pid" 2>/dev/null &&
        [[ $pid =~ ^[1-9][0-9]*$ && $(cat "/proc/$pid/comm" 2>/dev/null) == supervisord ]]; then
        kill -USR2 "$pid"
        say "$SERVICE: the install's supervisord reopens its logs (pid $pid)"
    fi
    if ! pid=$(running_pid); then
        say "$SERVICE: $APP_SERVER is not running: nothing to reopen"
        return 0
    fi
    if [[ $APP_SERVER == gunicorn ]]; then
        kill -USR1 "$pid"
    elif ! fifo_write l; then
        touch -- "$LOGREOPEN"
    fi
    say "$SERVICE: $APP_SERVER reopens its logs (pid $pid)"
}

main() {
    local command=${1:-}
    case $command in
        start | stop | restart | reload | status | run | reopen-logs) ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            [[ -z $command ]] || printf '\n%s: unknown command %q (one of: %s)\n' "$SELF" "$command" "$COMMANDS" >&2
            exit 2
            ;;
    esac
    refuse_root "$@"
    load_env "$@"
    cd -- "$ROOT" # the server's cwd from the start: running_pid() knows it by its cwd
    case $command in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop && cmd_start ;;
        reload) cmd_reload ;;
        status) cmd_status ;;
        run) cmd_run ;;
        reopen-logs) cmd_reopen_logs ;;
    esac
}

main "$@"

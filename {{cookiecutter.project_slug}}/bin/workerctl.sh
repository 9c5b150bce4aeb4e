#!/usr/bin/env bash
# Start, stop and restart this install's background worker (Celery), as the project user.
#
#   bin/workerctl.sh start|stop|restart|status|run
#
# The same semantics as bin/appctl.sh, under both process managers:
# - The systemd unit (ExecStart=) and the supervisor program (command=) run
#   `bin/workerctl.sh run`, which execs the worker in the foreground as the project user.
#   It logs to logs/celery.log, which Celery reopens by itself once logrotate has renamed
#   it: no signal, no restart, no line lost.
# - `stop` is Celery's warm shutdown (TERM): the worker takes no new task, lets the running
#   ones finish and exits 0, a normal stop for both managers (systemd Restart=on-failure,
#   supervisor autorestart=unexpected with exitcodes=0): a stop by hand stays stopped. A
#   crash or kill -9 is restarted.
# - `start` and `restart` go through the manager that runs the worker: the systemd unit
#   (the system part's polkit rule allows the project user that unit) or the install's own
#   supervisord. Without one (the sandbox of a systemd install) `start` runs `run` detached.
# - `restart` is what a deploy runs once the web app serves the new code: a warm shutdown,
#   then a worker with the new code. Tasks queued meanwhile wait in Redis, and a task is
#   acknowledged only once it has run (CELERY_TASK_ACKS_LATE): none is lost or run twice.
#
# Exit status: 0 done; 1 failed; 2 usage; status: 0 running, 1 dead with a pid file left,
# 3 stopped (LSB).
set -euo pipefail
umask 0027

SELF=$(basename -- "${BASH_SOURCE[0]}")
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
ENV_CONF="$ROOT/etc/env.conf"
# say, die, wait_until, pid_status, under_systemd, under_supervisor
# shellcheck source-path=SCRIPTDIR source=ctl-common.sh
source "$ROOT/bin/ctl-common.sh"
START_TIMEOUT=${WORKERCTL_START_TIMEOUT:-60}
# A warm shutdown waits for the running tasks: as long as the unit's TimeoutStopSec.
STOP_TIMEOUT=${WORKERCTL_STOP_TIMEOUT:-300}


usage() {
    cat <<EOF
usage: $SELF start|stop|restart|status|run

Controls this install's background worker (Celery), as the project user (never as root).
  start    start it and wait until it is ready (no-op when running)
  stop     warm shutdown: the running tasks finish, then it exits (no-op when stopped)
  restart  stop, then start: the new code (what a deploy runs)
  status   whether it runs (exit 0 running, 3 stopped)
  run      run it in the foreground (what the systemd unit and supervisor run)
EOF
}

load_env() {
    ((EUID != 0)) || die 1 "refusing to run as root: the worker runs the project's code as the project user." \
        "Run it as that user: runuser -u $(stat -c %U "$ROOT") -- $0 $*"
    [[ -f $ENV_CONF ]] || die 1 "$ENV_CONF is missing: run bin/deploytool init --install-type dev|stage|pro"
    # shellcheck source=/dev/null
    source "$ENV_CONF"
    local key
    for key in PROJECT_ROOT SYSTEM_ROOT PROCESS_MANAGER VENV RUN_DIR LOG_DIR WORKER_SERVICE WORKER_LOG \
        WORKER_PIDFILE CELERY_APP; do
        [[ -n ${!key:-} ]] || die 1 "$ENV_CONF has no $key: is the answer worker celery? Run bin/deploytool render"
    done
    CELERY="$PROJECT_ROOT/$VENV/bin/celery"
    SUPERVISOR_CONF="$ROOT/etc/supervisor/supervisord.conf"
}

# The worker's main pid, if its pid file names a live worker of this install (the pid
# file's path is on its command line: a recycled pid does not count).
running_pid() {
    local pid args
    [[ -r $WORKER_PIDFILE ]] || return 1
    read -r pid <"$WORKER_PIDFILE" || [[ -n ${pid:-} ]] || return 1
    [[ $pid =~ ^[1-9][0-9]*$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $args == *" --pidfile $WORKER_PIDFILE "* ]] || return 1
    printf '%s\n' "$pid"
}


gone() { ! kill -0 "$1" 2>/dev/null; }
# Pool processes a killed worker left behind (kill -9 of the main process orphans them; systemd
# ends them with the unit, supervisor does not): every process of the worker names this
# install's pid file on its command line, nothing else does.
orphans() { pgrep -u "$(id -u)" -f -- "--pidfile $WORKER_PIDFILE( |$)" | tr '\n' ' ' || true; }
no_orphans() { [[ -z $(orphans) ]]; }
log_size() { stat -c %s "$WORKER_LOG" 2>/dev/null || echo 0; }
# Ready: a worker runs and has said "ready." in its log since byte $1 of it.
ready_since() { running_pid >/dev/null && tail -c "+$(($1 + 1))" "$WORKER_LOG" 2>/dev/null | grep -q ' ready\.$'; }
wait_ready() {
    wait_until "$START_TIMEOUT" ready_since "$1" ||
        die 1 "$WORKER_SERVICE: no worker ready after ${START_TIMEOUT}s; see $WORKER_LOG and $LOG_DIR/supervisor-celery.log"
}



through() {
    local out
    if [[ $1 == systemd ]]; then
        out=$(systemctl --no-ask-password "$2" "$WORKER_SERVICE.service" 2>&1) ||
            die 1 "systemctl $2 $WORKER_SERVICE as $(id -un) was refused ($out): as root, systemctl $2 $WORKER_SERVICE"
    else
        out=$(supervisorctl -c "$SUPERVISOR_CONF" "$2" "$WORKER_SERVICE" 2>&1) ||
            die 1 "supervisorctl $2 $WORKER_SERVICE failed ($out); see $LOG_DIR/supervisor-celery.log"
    fi
}

manager() {
    if under_supervisor "$WORKER_SERVICE"; then
        echo supervisor
    elif under_systemd "$WORKER_SERVICE"; then
        echo systemd
    fi
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait_until "$STOP_TIMEOUT" gone "$1" ||
        die 1 "the worker (pid $1) still runs ${STOP_TIMEOUT}s after its warm shutdown began (a task that long?);" \
            "to end it at once: kill -QUIT $1"
}

cmd_run() {
    [[ -x $CELERY ]] || die 1 "$CELERY is missing: $PROJECT_ROOT/$VENV/bin/python -m pip install -r requirements.txt"
    local pid
    if pid=$(running_pid); then
        # one started by hand: the manager takes over, never two at once
        say "stopping the worker started by hand (pid $pid) first"
        stop_pid "$pid"
    fi
    local left
    left=$(orphans)
    if [[ -n $left ]]; then
        say "stopping what a killed worker left behind (pids $left)"
        # shellcheck disable=SC2086 # a list of pids
        kill -TERM $left 2>/dev/null || true
        if ! wait_until 10 no_orphans; then
            left=$(orphans)
            # shellcheck disable=SC2086 # a list of pids
            [[ -z $left ]] || kill -KILL $left 2>/dev/null || true
        fi
    fi
    rm -f -- "$WORKER_PIDFILE"
    cd -- "$PROJECT_ROOT"
    local beat=()
    if [[ ${JOBS:-on} == on ]]; then
        # Celery beat, in this worker: the host that runs the jobs runs the only beat (one
        # worker per install, JOBS=off on every other host), its schedule state in data/.
        beat=(--beat --schedule "$PROJECT_ROOT/data/celerybeat-schedule")
    fi
    exec "$CELERY" -A "$CELERY_APP" worker --loglevel INFO --logfile "$WORKER_LOG" \
        --pidfile "$WORKER_PIDFILE" --hostname "$WORKER_SERVICE@%h" "${beat[@]}"
}

cmd_start() {
    local pid size how
    if pid=$(running_pid); then
        say "$WORKER_SERVICE: already running (pid $pid)"
        return 0
    fi
    size=$(log_size)
    how=$(manager)
    if [[ -n $how ]]; then
        through "$how" start
    else
        setsid "$ROOT/bin/$SELF" run </dev/null >>"$WORKER_LOG" 2>&1 &
        how="hand: outside any manager"
    fi
    wait_ready "$size"
    say "$WORKER_SERVICE: started (pid $(running_pid), by $how)"
}

cmd_stop() {
    local pid how
    if ! pid=$(running_pid); then
        rm -f -- "$WORKER_PIDFILE"
        say "$WORKER_SERVICE: not running"
        return 0
    fi
    how=$(manager)
    if [[ $how == systemd ]]; then
        through systemd stop
    else
        stop_pid "$pid" # under supervisor: exit 0, an expected exit it leaves stopped
    fi
    say "$WORKER_SERVICE: stopped (pid $pid; the running tasks finished)"
}

cmd_restart() {
    local how size before
    how=$(manager)
    if [[ -z $how ]]; then
        cmd_stop
        cmd_start
        return
    fi
    before=$(running_pid || true)
    size=$(log_size)
    through "$how" restart
    wait_ready "$size"
    say "$WORKER_SERVICE: restarted by $how (pid ${before:-none} -> $(running_pid))"
}

cmd_status() { pid_status "$WORKER_SERVICE: celery" "$WORKER_PIDFILE"; }

main() {
    local command=${1:-}
    case $command in
        start | stop | restart | status | run) ;;
        -h | --help)
            usage
            return 0
            ;;
        *)
            usage >&2
            return 2
            ;;
    esac
    load_env "$@"
    "cmd_$command"
}

main "$@"

#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by slurm/cluster-up.sh. Only daemons whose pid files
# lie under <repo>/.slurm/run/ are stopped (a munged that was already running before cluster-up
# has no pid file there and is left alone); state, configs and logs are kept for the next start.
# Idempotent: with nothing running it only says so.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN="$(dirname "$HERE")/.slurm/run"
TIMEOUT=30                       # seconds a daemon gets to exit after SIGTERM, then SIGKILL

# shellcheck source=processes.sh
source "$HERE/processes.sh"   # running PID, alive PIDFILE NAME

# stop NAME: SIGTERM the process of .slurm/run/NAME.pid, wait for it, SIGKILL it past the timeout.
stop() {
    local name=$1 pidfile="$RUN/$1.pid" comm=${2:-$1} pid
    if ! alive "$pidfile" "$comm"; then
        echo "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + TIMEOUT))
    while running "$pid"; do
        if ((SECONDS >= deadline)); then
            echo "$name: still running after ${TIMEOUT}s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
    echo "$name: stopped"
}

# Reverse order of the start: compute node, controller, accounting, database, authentication.
stop slurmd
stop slurmctld
stop slurmdbd
stop mysqld mariadbd
stop munged

#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost: munged, a private MariaDB, slurmdbd,
# slurmctld and slurmd, with all state under <repo>/.slurm/ (configs, pid files, logs, spool,
# database). Idempotent: a daemon whose pid file names a live process is left alone.
# Run as root (after slurm/install.sh). Stop with slurm/cluster-down.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"   # <repo>/slurm
STATE="$(dirname "$HERE")/.slurm"                      # <repo>/.slurm, wherever the repo lives
ETC="$STATE/etc" RUN="$STATE/run" LOG="$STATE/log"
CLUSTER=ra3lab
TIMEOUT=60                       # seconds allowed to each wait
export SLURM_CONF="$ETC/slurm.conf"

die() { echo "cluster-up: $*" >&2; exit 1; }

# Print the end of a log file (on failure).
tail_log() { if [[ -f $1 ]]; then echo "--- last lines of $1:" >&2; tail -n 30 "$1" >&2; fi; }

# shellcheck source=processes.sh
source "$HERE/processes.sh"   # running PID, alive PIDFILE NAME

# wait_for DESC LOGFILE PID CMD...: run CMD until it succeeds, at most TIMEOUT seconds; fail at
# once if the daemon died (PID: a pid, a pid file once the daemon has written it, or - for none).
wait_for() {
    local desc=$1 log=$2 watch=$3 pid; shift 3
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        pid=$watch
        if [[ -f $watch ]]; then pid="$(cat "$watch" 2>/dev/null || true)"; fi
        if [[ $pid =~ ^[0-9]+$ ]] && ! running "$pid"; then
            echo "cluster-up: $desc exited while starting" >&2
            tail_log "$log"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "cluster-up: timed out after ${TIMEOUT}s waiting for $desc" >&2
            tail_log "$log"
            exit 1
        fi
        sleep 0.2
    done
}

# render TEMPLATE OUT MODE: fill @NAME@ placeholders; replace OUT only when its content changes.
render() {
    local tmp="$2.tmp"
    sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@SLURMCTLD_PORT@|$SLURMCTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@SLURMDBD_PORT@|$SLURMDBD_PORT|g" -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" -e "s|@DB_PASSWORD@|$DB_PASSWORD|g" \
        "$1" > "$tmp"
    chmod "$3" "$tmp"
    if cmp -s "$tmp" "$2"; then rm -f "$tmp"; else mv -f "$tmp" "$2"; CHANGED+=" $2"; fi
}
CHANGED=""                       # configs rewritten by this run (running daemons keep the old ones)
WAS_RUNNING=0                    # 1 once a configured daemon was found already running
already() { echo "$1: already running"; WAS_RUNNING=1; }

[[ $EUID -eq 0 ]] || die "run as root (munged must be started as the munge user, the rest as root)"
for cmd in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
    command -v "$cmd" >/dev/null || die "$cmd not found: run slurm/install.sh first"
done

# --- configuration ------------------------------------------------------------------------
mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/mysql"
chmod 0700 "$STATE/mysql"   # etc/ stays readable: clients read slurm.conf; secrets are 0600
# Ports: SLURM's defaults (and 3307 for MariaDB) unless taken, e.g. by the cluster of another clone
# of the repo on this machine; then the next free block. Chosen once, kept in etc/ports.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ ! -s $ETC/ports ]]; then
    for offset in $(seq 0 10 200); do
        ports=($((6817 + offset)) $((6818 + offset)) $((6819 + offset)) $((3307 + offset)))
        taken=0
        for port in "${ports[@]}"; do if listening "$port"; then taken=1; fi; done
        if ((taken == 0)); then break; fi
    done
    ((taken == 0)) || die "no free ports found for the cluster"
    printf 'SLURMCTLD_PORT=%s\nSLURMD_PORT=%s\nSLURMDBD_PORT=%s\nMYSQL_PORT=%s\n' "${ports[@]}" > "$ETC/ports"
fi
source "$ETC/ports"
# free_port PORT: refuse to start a daemon on a port someone else already listens on.
free_port() { ! listening "$1" || die "port $1 is taken by another program: edit or delete $ETC/ports"; }
CPUS="$(nproc)"
MEMORY_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2 ))   # half of RAM
# The database password is made once, kept private, and reused by later starts.
if [[ ! -s $ETC/db-password ]]; then
    (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ETC/db-password")
fi
DB_PASSWORD="$(cat "$ETC/db-password")"
render "$HERE/slurm.conf.in" "$ETC/slurm.conf" 0644
render "$HERE/slurmdbd.conf.in" "$ETC/slurmdbd.conf" 0600
# MariaDB: a private instance, reachable by TCP on 127.0.0.1 only and by its own socket.
cat > "$ETC/my.cnf.tmp" <<CNF
[mysqld]
datadir=$STATE/mysql/data
socket=$STATE/mysql/mysqld.sock
pid-file=$RUN/mysqld.pid
log-error=$LOG/mysqld.log
port=$MYSQL_PORT
bind-address=127.0.0.1
user=root
skip-log-bin
performance_schema=OFF
innodb_buffer_pool_size=128M
innodb_lock_wait_timeout=900
max_allowed_packet=16M
CNF
if cmp -s "$ETC/my.cnf.tmp" "$ETC/my.cnf"; then rm -f "$ETC/my.cnf.tmp"; else mv -f "$ETC/my.cnf.tmp" "$ETC/my.cnf"; CHANGED+=" $ETC/my.cnf"; fi

# --- munged (system-wide: clients find it at its default socket) ---------------------------
# Started as the munge user. A munged already running (ours or anyone's) is left alone; only one
# started here gets a pid file under .slurm/run/, so cluster-down.sh stops only that one.
if alive "$RUN/munged.pid" munged || alive /run/munge/munged.pid munged; then
    echo "munged: already running"      # (it reads none of the files under .slurm/etc/)
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    runuser -u munge -- munged
    wait_for "munged" /var/log/munge/munged.log - alive /run/munge/munged.pid munged
    wait_for "munge to answer" /var/log/munge/munged.log /run/munge/munged.pid munge -n
    cp /run/munge/munged.pid "$RUN/munged.pid"
    echo "munged: started"
fi

# --- MariaDB (private: datadir, socket and port under .slurm/) -----------------------------
mysql_root() { mariadb --no-defaults --protocol=socket --socket="$STATE/mysql/mysqld.sock" -uroot "$@"; }
if alive "$RUN/mysqld.pid" mariadbd; then
    already mariadbd
else
    if [[ ! -d $STATE/mysql/data/mysql ]]; then
        mariadb-install-db --defaults-file="$ETC/my.cnf" --auth-root-authentication-method=socket \
            > "$LOG/mysql-install.log" 2>&1 || { tail_log "$LOG/mysql-install.log"; die "mariadb-install-db failed"; }
    fi
    free_port "$MYSQL_PORT"
    rm -f "$RUN/mysqld.pid"
    setsid mariadbd --defaults-file="$ETC/my.cnf" >> "$LOG/mysqld.log" 2>&1 < /dev/null &
    wait_for "mariadbd" "$LOG/mysqld.log" $! mysql_root -e 'SELECT 1'
    echo "mariadbd: started"
fi
# The slurmdbd account (idempotent: re-running only re-states the same password and grant).
mysql_root --connect-timeout=10 <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# start_daemon NAME PORT READY_CMD... -- DAEMON_CMD...: start a SLURM daemon unless its pid file names a
# live one; with a READY_CMD, wait until it succeeds (the daemon's log tail on failure).
start_daemon() {
    local name=$1 port=$2 ready=() command=()
    shift 2
    while [[ $1 != -- ]]; do ready+=("$1"); shift; done
    shift
    command=("$@")
    if alive "$RUN/$name.pid" "$name"; then already "$name"; return; fi
    free_port "$port"
    rm -f "$RUN/$name.pid"
    "${command[@]}" || { tail_log "$LOG/$name.log"; die "$name failed to start"; }
    if [[ ${#ready[@]} -gt 0 ]]; then wait_for "$name" "$LOG/$name.log" "$RUN/$name.pid" "${ready[@]}"; fi
    echo "$name: started"
}

# --- slurmdbd, then the cluster's registration in it ---------------------------------------
start_daemon slurmdbd "$SLURMDBD_PORT" sacctmgr -n show cluster -- slurmdbd
if ! timeout 30 sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    timeout 30 sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "could not add cluster $CLUSTER to slurmdbd"
fi

# --- slurmctld and slurmd ------------------------------------------------------------------
start_daemon slurmctld "$SLURMCTLD_PORT" scontrol ping -- slurmctld
start_daemon slurmd "$SLURMD_PORT" -- slurmd -N localhost

# --- ready: the node is idle (or busy with jobs) and accounting answers --------------------
node_up() { sinfo -h -n localhost -o %T | grep -Eqx 'idle|mixed|allocated|completing'; }
wait_for "the node to be idle in sinfo" "$LOG/slurmd.log" "$RUN/slurmd.pid" node_up
wait_for "sacct to answer" "$LOG/slurmdbd.log" "$RUN/slurmdbd.pid" sacct -n -X -S now-1minutes
sinfo
if [[ -n $CHANGED && $WAS_RUNNING -eq 1 ]]; then
    echo "cluster-up: note: rewrote$CHANGED while daemons were running; restart them to apply:" >&2
    echo "  make slurm-down && make slurm-up" >&2
fi
echo
echo "SLURM is up. Point clients at it with:"
echo "export SLURM_CONF=$SLURM_CONF"

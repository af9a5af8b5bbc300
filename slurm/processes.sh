# Process checks shared by cluster-up.sh and cluster-down.sh (sourced, not run).

# running PID: the process exists and is not a zombie (PID 1 here may be slow to reap daemons).
running() { [[ "$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" =~ ^[^Z]$ ]]; }

# alive PIDFILE NAME: the pid file names a running process whose command starts with NAME.
alive() {
    local pid
    [[ -f $1 ]] && pid="$(cat "$1" 2>/dev/null)" && [[ $pid =~ ^[0-9]+$ ]] || return 1
    running "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2"* ]]
}

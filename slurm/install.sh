#!/usr/bin/env bash
# Install Debian's SLURM, munge and MariaDB packages for the local test cluster (run as root), or the
# Debian packages given as arguments (paper/install.sh: LaTeX).
# Idempotent: when every package is already installed it returns at once, without touching apt.
set -euo pipefail

# slurmctld/slurmd: the daemons; slurm-client: sinfo, squeue, sbatch, sacct, sacctmgr, scancel;
# slurmdbd + mariadb-server: accounting, which `sacct` (and so submitit) needs; munge: authentication.
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
if [[ $# -gt 0 ]]; then PACKAGES=("$@"); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install: ${PACKAGES[*]}: already installed"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "install: missing packages (${missing[*]}); run as root" >&2
    exit 1
fi

echo "install: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 keeps package scripts from starting the system services (munge, mariadb,
# slurm*): the cluster scripts start private instances themselves. Removed again on exit.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [[ $own_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install: done"

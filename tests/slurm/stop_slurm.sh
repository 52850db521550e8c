#!/usr/bin/env bash
# Stops what tests/slurm/start_slurm.sh started: slurmd, slurmctld and (unless --keep-munge) the
# munged it started, by their pid files in $SIM_SLURM_DIR (default /var/lib/sim-slurm). Jobs still
# running are cancelled. The configuration, state and logs stay (start_slurm.sh reuses them).
set -uo pipefail

DIR=${SIM_SLURM_DIR:-/var/lib/sim-slurm}
export SLURM_CONF=$DIR/slurm.conf
PATH=$PATH:/usr/sbin:/sbin

# a pid file's process is running and is that daemon (not another process that got its pid)
alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
          tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$(basename "$1" .pid)"; }
stop() {  # pid file: TERM, then KILL after 15 s
    local f=$DIR/$1.pid pid
    alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$f"
    echo "stop_slurm: $1 stopped (pid $pid)"
}

if alive "$DIR/slurmctld.pid"; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null)  # every job of this test cluster
    [ -z "$jobs" ] || timeout 10 scancel --quiet $jobs >/dev/null 2>&1 || true
fi
stop slurmd
stop slurmctld
[ "${1:-}" = --keep-munge ] || stop munged
exit 0

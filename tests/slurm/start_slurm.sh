#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py and for trying
# `hydra/launcher=submitit_slurm` by hand: the distribution's slurmctld, slurmd and munged, on the
# loopback only (SlurmctldHost=localhost, one node `localhost` with this machine's CPUs and memory,
# one default partition `debug`), no cgroups, no accounting database, no systemd.
#
#   sudo bash tests/slurm/start_slurm.sh     # idempotent: starts what is not running yet
#   export SLURM_CONF=/var/lib/sim-slurm/slurm.conf   # (or $SIM_SLURM_DIR/slurm.conf) for sinfo, sbatch, ...
#   sudo bash tests/slurm/stop_slurm.sh
#
# Installs slurmctld, slurmd, slurm-client and munge with apt-get when they are missing (as root).
# State, spool, logs and pid files live in $SIM_SLURM_DIR (default /var/lib/sim-slurm); the config
# is $SIM_SLURM_DIR/slurm.conf, also linked as /etc/slurm/slurm.conf when that path is free (then
# plain `sinfo` works). Exits 0 once `sinfo` shows the node idle and `srun -N1 true` works;
# otherwise exits 1 with one line on stderr, `start_slurm: <reason>` (the last line it prints).
set -uo pipefail

DIR=${SIM_SLURM_DIR:-/var/lib/sim-slurm}
CONF=$DIR/slurm.conf
MARK="# written by sim's tests/slurm/start_slurm.sh"
export SLURM_CONF=$CONF
PATH=$PATH:/usr/sbin:/sbin

say() { echo "start_slurm: $*"; }
fail() { echo "start_slurm: $*" >&2; exit 1; }
# the last error-looking line of a log file (or its last line), for a reason
why() { local l; l=$(grep -aiE 'fatal' "$1" 2>/dev/null | tail -n 1)
        [ -n "$l" ] || l=$(grep -aiE 'error|denied|not permitted|cannot|unable|fail' "$1" 2>/dev/null | grep -v pmix | tail -n 1)
        [ -n "$l" ] || l=$(tail -n 1 "$1" 2>/dev/null); echo "${l:-no log in $1}"; }
# a pid file's process is running and is that daemon (not another process that got its pid)
alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
          tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$(basename "$1" .pid)"; }

[ "$(id -u)" = 0 ] || fail "must run as root (installs packages, runs slurmd and munged); not started"

# ---- 1. packages ----------------------------------------------------------------------------------
need=(slurmctld slurmd sinfo srun sbatch squeue scontrol munged munge unmunge)
missing() { local c; for c in "${need[@]}"; do command -v "$c" >/dev/null 2>&1 || { echo "$c"; return; }; done; }
if [ -n "$(missing)" ]; then
    command -v apt-get >/dev/null 2>&1 || fail "$(missing) not installed and no apt-get to install it"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    mkdir -p "$DIR"
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the packages from starting their services
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
    fi
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                    slurmctld slurmd slurm-client munge >"$DIR/apt.log" 2>&1; }
    apt_install || { apt-get update >>"$DIR/apt.log" 2>&1; apt_install; }
    rc=$?
    [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || fail "apt-get install slurmctld slurmd slurm-client munge failed: $(grep -a '^E:' "$DIR/apt.log" | tail -n 1 || tail -n 1 "$DIR/apt.log")"
    [ -z "$(missing)" ] || fail "$(missing) still missing after apt-get install"
fi
mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log || fail "cannot create $DIR"

# ---- 2. munge -------------------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile="$key" 2>"$DIR/log/mungekey.log"
        else dd if=/dev/urandom of="$key" bs=1 count=1024 2>/dev/null; fi
        [ -s "$key" ] || fail "cannot create the munge key $key: $(why "$DIR/log/mungekey.log")"
    fi
    as=root
    if id munge >/dev/null 2>&1; then as=munge; fi
    chown -R "$as": /etc/munge && chmod 0700 /etc/munge && chmod 0400 "$key"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown "$as": /run/munge /var/lib/munge /var/log/munge && chmod 0755 /run/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    rm -f /run/munge/munged.pid
    if [ "$as" = munge ]; then  # munged daemonises; its log: /var/log/munge/munged.log
        runuser -u munge -- munged 2>>"$DIR/log/munged.out"
    else
        munged --force 2>>"$DIR/log/munged.out"
    fi || fail "munged did not start: $(why "$DIR/log/munged.out")"
    for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
    munge_ok || fail "munge does not work after starting munged: $(munge -n 2>&1 >/dev/null | tail -n 1)"
    cp /run/munge/munged.pid "$DIR/munged.pid" 2>/dev/null  # stop_slurm.sh stops only a munged started here
    say "munged started (pid $(cat "$DIR/munged.pid" 2>/dev/null))"
fi

# ---- 3. slurm.conf --------------------------------------------------------------------------------
hw=$(slurmd -C 2>"$DIR/log/slurmd-C.log" | head -n 1)
case $hw in NodeName=*) ;; *) fail "slurmd -C cannot read this machine's CPUs and memory: $(why "$DIR/log/slurmd-C.log")";; esac
hw=${hw#NodeName=* }  # CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=.. RealMemory=..
new=$(cat <<EOF
$MARK
ClusterName=simtest
SlurmctldHost=localhost
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=300
InactiveLimit=0
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
    printf '%s\n' "$new" > "$CONF" || fail "cannot write $CONF"
    changed=1
fi
if [ ! -e /etc/slurm/slurm.conf ] || [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
    mkdir -p /etc/slurm && ln -sfn "$CONF" /etc/slurm/slurm.conf
fi

# ---- 4. daemons -----------------------------------------------------------------------------------
if [ -n "$changed" ] && { alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; }; then
    say "configuration changed: restarting the daemons"
    bash "$(dirname "$0")/stop_slurm.sh" --keep-munge >/dev/null 2>&1
fi
start() {  # name, then the daemon's command line (-D: in the foreground, here in the background)
    local name=$1; shift
    alive "$DIR/$name.pid" && return 0
    local f; for f in "$DIR/log/$name.out" "$DIR/log/$name.log"; do [ -e "$f" ] && mv -f "$f" "$f.1"; done  # this start's logs only
    setsid "$@" -D </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! > "$DIR/$name.pid"
    sleep 1
    alive "$DIR/$name.pid" || fail "$name exited at start: $(cat "$DIR/log/$name.out" "$DIR/log/$name.log" > "$DIR/log/$name.why" 2>/dev/null; why "$DIR/log/$name.why")"
    say "$name started (pid $(cat "$DIR/$name.pid"))"
}
start slurmctld slurmctld -f "$CONF"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer: $(why "$DIR/log/slurmctld.log")"
start slurmd slurmd -f "$CONF" -N localhost

# ---- 5. ready? ------------------------------------------------------------------------------------
state=
for i in $(seq 150); do
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -n 1)
    case $state in
        idle|mixed|allocated) break;;
        down*|drain*|fail*) [ $((i % 10)) = 1 ] && scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1;;
    esac
    alive "$DIR/slurmd.pid" || fail "slurmd exited: $(why "$DIR/log/slurmd.log")"
    sleep 0.2
done
case $state in idle|mixed|allocated) ;; *)
    fail "node localhost is '${state:-unknown}' after 30 s, not idle: $(sinfo -h -N -o %E 2>/dev/null | head -n 1) $(why "$DIR/log/slurmd.log")";;
esac
out=$(timeout 60 srun -N1 -n1 -t 1 true 2>&1) || fail "srun -N1 true failed: $(printf '%s\n' "$out" | tail -n 1)"
say "up: node localhost $state ($hw), partition debug; SLURM_CONF=$CONF"

#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm executor's tests and for trying
# `scaling launch --executor slurm` without a real cluster.
#
#   scripts/slurm_cluster.sh install      # Debian's slurm-wlm and munge (root; apt-get)
#   scripts/slurm_cluster.sh start [DIR]  # munged, slurmctld and slurmd on localhost
#   scripts/slurm_cluster.sh stop  [DIR]
#
# One cluster per machine (Slurm's ports are fixed): start replaces one already running.
# Everything Slurm writes lives in DIR (default /tmp/scaling-slurm): slurm.conf, state,
# spool and logs. Clients find the cluster through SLURM_CONF=DIR/slurm.conf, which `start`
# prints; the tests set it themselves. The node claims CPUS cpus (default 4, more than a small
# machine has, so that a job array's tasks run side by side: they are tiny CPU runs).
set -euo pipefail

command="${1:-}"
dir="$(realpath -m "${2:-/tmp/scaling-slurm}")"
host="$(hostname -s)"
cpus="${CPUS:-4}"

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        return
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat >"$dir/slurm.conf" <<CONF
ClusterName=scaling-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits out its step credentials' lifetime before it may start again (120 s by
# default): short here, where the tests requeue and wait.
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or preempted: the
# time a run has to write its checkpoint.
KillWait=60
# Schedule often: a requeued job becomes eligible again while nothing else triggers the scheduler.
SchedulerParameters=sched_interval=2,bf_interval=1
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    install
    write_config
    export SLURM_CONF="$dir/slurm.conf"
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        [ -s /etc/munge/munge.key ] || { mungekey --create --force && chown munge:munge /etc/munge/munge.key; }
        runuser -u munge -- munged
    fi
    stop_daemons
    slurmctld -c  # -c: a clean start, no jobs kept from an earlier cluster in DIR
    slurmd
    for _ in $(seq 1 120); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return
        fi
        sleep 0.5
    done
    echo "slurm did not come up; logs in $dir/log" >&2
    tail -n 20 "$dir/log/"*.log >&2 || true
    exit 1
}

stop_daemons() {
    # Slurm's ports are the machine's: one cluster at a time, whichever DIR started it.
    for daemon in slurmd slurmctld; do
        pkill -x "$daemon" || true
        while pgrep -x "$daemon" >/dev/null; do sleep 0.2; done
        rm -f "$dir/$daemon.pid"
    done
}

case "$command" in
    install) install ;;
    start) start ;;
    stop) stop_daemons ;;
    *) echo "usage: $0 install|start|stop [DIR]" >&2; exit 2 ;;
esac

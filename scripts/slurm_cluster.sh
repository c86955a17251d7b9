#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm executor's tests and for trying
# `scaling launch --executor slurm` without a real cluster.
#
#   scripts/slurm_cluster.sh install      # Debian's slurm-wlm and munge (root; apt-get)
#   scripts/slurm_cluster.sh start [DIR]  # munged, slurmctld and slurmd on localhost
#   scripts/slurm_cluster.sh stop  [DIR]
#   NODES=2 scripts/slurm_cluster.sh start [DIR]  # two nodes: a slurmd for each
#
# Two nodes run two slurmd on this host (Debian's slurmd is built for it: `slurmd -N NAME`),
# named scaling-node1 and scaling-node2, each on a port of its own; their names resolve to
# 127.0.0.1 through lines this script adds to /etc/hosts (and `stop` removes), so a job's
# first node is an address its other node can reach, as on a cluster.
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
nodes="${NODES:-1}"
hosts_mark="# scaling-test-cluster"

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
CONF
    if [ "$nodes" = 1 ]; then
        echo "NodeName=$host CPUs=$cpus State=UNKNOWN" >>"$dir/slurm.conf"
    else
        # one slurmd per node on this host: spool, pid file and log of its own (%n: its name)
        sed -i "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=$dir/spool/%n|; \
            s|^SlurmdPidFile=.*|SlurmdPidFile=$dir/slurmd-%n.pid|; \
            s|^SlurmdLogFile=.*|SlurmdLogFile=$dir/log/slurmd-%n.log|" "$dir/slurm.conf"
        for i in $(seq 1 "$nodes"); do
            mkdir -p "$dir/spool/scaling-node$i"
            echo "NodeName=scaling-node$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((17000 + i)) CPUs=$cpus State=UNKNOWN" >>"$dir/slurm.conf"
        done
    fi
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$dir/slurm.conf"
}

node_names() {
    for i in $(seq 1 "$nodes"); do echo "scaling-node$i"; done
}

add_hosts() {
    remove_hosts
    echo "127.0.0.1 $(node_names | tr '\n' ' ')$hosts_mark" >>/etc/hosts
}

remove_hosts() {
    if grep -q "$hosts_mark" /etc/hosts 2>/dev/null; then
        grep -v "$hosts_mark" /etc/hosts >/etc/hosts.scaling-tmp
        cat /etc/hosts.scaling-tmp >/etc/hosts  # in place: /etc/hosts may be a bind mount
        rm -f /etc/hosts.scaling-tmp
    fi
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
    if [ "$nodes" = 1 ]; then
        slurmd
    else
        add_hosts
        for name in $(node_names); do slurmd -N "$name"; done
    fi
    for _ in $(seq 1 120); do
        if [ "$(sinfo -h -N -o '%T' 2>/dev/null | grep -cx idle)" = "$nodes" ]; then
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
        rm -f "$dir/$daemon".pid "$dir/$daemon"-*.pid
    done
    remove_hosts
}

case "$command" in
    install) install ;;
    start) start ;;
    stop) stop_daemons ;;
    *) echo "usage: $0 install|start|stop [DIR]" >&2; exit 2 ;;
esac

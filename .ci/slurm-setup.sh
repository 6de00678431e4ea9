#!/usr/bin/env bash
# A one-node Slurm on localhost for the tests marked `slurm` (needs root and Debian's slurm-wlm + munge).
#
#   .ci/slurm-setup.sh start DIR [N_GPUS]   writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   .ci/slurm-setup.sh stop DIR             stops the three daemons by the PIDs recorded in DIR
#
# Everything (config, keys, sockets, state, logs, PID files) lives in DIR. The node has 2 CPUs and
# N_GPUS (default 2) fake GPUs: gres.conf points at character devices made with mknod in DIR.
# Client commands need SLURM_CONF=DIR/slurm.conf in their environment.
set -euo pipefail

action=${1:?usage: $0 start|stop DIR [N_GPUS]}
dir=$(realpath -m "${2:?usage: $0 start|stop DIR [N_GPUS]}")
n_gpus=${3:-2}
controller_port=${SLURM_TEST_CONTROLLER_PORT:-6817}
node_port=${SLURM_TEST_NODE_PORT:-6818}
node=testnode

stop() {
    for daemon in slurmd slurmctld munged; do
        if [[ -f "$dir/$daemon.pid" ]]; then
            pid=$(cat "$dir/$daemon.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "slurm-setup: $what did not come up within ${seconds}s; logs in $dir" >&2
    tail -n 20 "$dir"/*.log >&2 || true
    stop
    exit 1
}

if [[ $action == stop ]]; then
    stop
    exit 0
fi
[[ $action == start ]] || { echo "usage: $0 start|stop DIR [N_GPUS]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "slurm-setup: must run as root (slurmd runs jobs as their users)" >&2; exit 1; }
for program in munged slurmctld slurmd sbatch; do
    command -v "$program" >/dev/null || { echo "slurm-setup: $program not found; apt-get install slurm-wlm munge" >&2; exit 1; }
done

mkdir -p "$dir"/{state,spool,devices}
chmod 0700 "$dir"
dd if=/dev/urandom of="$dir/munge.key" bs=128 count=1 status=none
chmod 0400 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
wait_for 10 munged test -S "$dir/munge.socket"

for ((i = 0; i < n_gpus; i++)); do
    [[ -e "$dir/devices/gpu$i" ]] || mknod "$dir/devices/gpu$i" c 195 "$i"
done
host=$(hostname -s)
cat >"$dir/gres.conf" <<EOF
NodeName=$node Name=gpu File=$dir/devices/gpu[0-$((n_gpus - 1))]
EOF
cat >"$dir/slurm.conf" <<EOF
ClusterName=campaigntest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$controller_port
SlurmdPort=$node_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
ReturnToService=2
MaxArraySize=1001
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=2
SlurmctldParameters=enable_configless
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$host CPUs=2 RealMemory=4000 Gres=gpu:$n_gpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$dir/slurm.conf"
wait_for 20 slurmctld scontrol ping
slurmd -f "$dir/slurm.conf" -N "$node"
wait_for 30 "slurmd (node $node idle)" bash -c "sinfo -h -N -o %T | grep -qx idle"
echo "SLURM_CONF=$dir/slurm.conf"

#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for testing `executor: slurm` studies.
#
#   sudo tools/slurm_local.sh install  # only the packages (apt-get, if missing); CI does this first
#   sudo tools/slurm_local.sh start    # install (if missing), configure, start, wait for the node
#   tools/slurm_local.sh status        # sinfo / squeue
#   sudo tools/slurm_local.sh stop     # stop the daemons this script started
#
# Needs root and Debian/Ubuntu's apt-get (packages: slurmctld slurmd slurm-client munge). Writes
# /etc/slurm/slurm.conf (refuses to replace one it did not write), keeps state, spool, logs and pid
# files under $RDET_SLURM_DIR (default /tmp/rdet-slurm). The node has this machine's CPUs (nproc)
# and 90% of its memory, in one default partition `debug`; no accounting database, so `sacct` is
# unavailable (rdet's study runner follows jobs with squeue). Takes ~15 s once installed.
#
# Time limits and requeue (what tests/test_slurm.py's requeue test needs, and quick to see):
# JobRequeue=1 (batch jobs may be requeued: a cell at its time limit checkpoints and requeues
# itself), KillWait=5 (SIGTERM -> SIGKILL after 5 s, not 30), OverTimeLimit=0 (the limit is the
# limit), AuthInfo=cred_expire=10 (Slurm holds a requeued job for cred_expire + 1 s: 121 s by
# default) and sched_interval=2 (then it starts within seconds, not at the next 60 s pass). The warning signal (sbatch --signal, submitit's signal_delay_s) is the job's
# own setting; slurmctld checks time limits about every 30 s, so it arrives up to that much early.
set -euo pipefail

DIR=${RDET_SLURM_DIR:-/tmp/rdet-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by rdet tools/slurm_local.sh"
PKGS=(slurmctld slurmd slurm-client munge)

die() { echo "slurm_local: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "needs root to install ${PKGS[*]}"
  command -v apt-get >/dev/null || die "no apt-get: install ${PKGS[*]} yourself"
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the package lists do not know the packages yet
  if ! apt-get install -y -q --no-install-recommends "${PKGS[@]}" >"$DIR/apt.log" 2>&1; then
    apt-get update -q >>"$DIR/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends "${PKGS[@]}" >>"$DIR/apt.log" 2>&1 \
      || die "apt-get install ${PKGS[*]} failed (see $DIR/apt.log)"
  fi
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; not replacing it"
  fi
  mkdir -p "$(dirname "$CONF")" "$DIR/ctld" "$DIR/slurmd" "$DIR/log"
  [ -f "$CONF" ] && cp "$CONF" "$DIR/slurm.conf.before" || rm -f "$DIR/slurm.conf.before"
  cat >"$CONF" <<EOF
$MARK (state in $DIR)
ClusterName=rdet
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
JobRequeue=1
KillWait=5
OverTimeLimit=0
SchedulerParameters=sched_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  if ! munge -n >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
  fi
  munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_idle() {
  local i
  for i in $(seq 1 120); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then return 0; fi
    sleep 0.5
  done
  sinfo >&2 || true
  die "the node did not become idle in 60 s (logs: $DIR/log/)"
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root"
  mkdir -p "$DIR"
  install_packages
  write_conf
  start_munge
  if ! cmp -s "$CONF" "$DIR/slurm.conf.before" && { alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid"; }; then
    echo "slurm_local: $CONF changed: restarting the daemons"
    stop
  fi
  alive "$DIR/slurmctld.pid" || slurmctld
  alive "$DIR/slurmd.pid" || slurmd
  wait_idle
  # a node left down/drained by an earlier run of the daemons
  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
  sinfo
}

stop() {
  local f pid
  for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    if alive "$f"; then
      pid=$(cat "$f")
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  echo "slurm_local: stopped slurmd and slurmctld (munged left running)"
}

status() {
  sinfo && squeue
}

case "${1:-}" in
  install) mkdir -p "$DIR"; install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac

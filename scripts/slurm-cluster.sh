#!/usr/bin/env bash
# Starts, checks and stops a real single-node Slurm cluster (munged + slurmctld + slurmd) on this
# Debian 12 machine, for integration tests. Needs root (or sudo) and no systemd: the daemons run
# detached and are tracked by their pidfiles. State, spool and logs live in SAESCOPE_SLURM_DIR
# (default /var/lib/saescope-slurm); /etc/slurm/slurm.conf is a symlink to the slurm.conf there so
# plain `sbatch`/`squeue`/`sinfo` find the cluster without SLURM_CONF.
#   usage: scripts/slurm-cluster.sh start|stop|status
set -euo pipefail

dir="${SAESCOPE_SLURM_DIR:-/var/lib/saescope-slurm}"
host="$(hostname -s)"
munge_pid=/run/munge/munged.pid # munged's default, so one started by the package is found too
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

die() { echo "slurm-cluster: error: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && $sudo kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { timeout 5 sinfo -h -n "$host" -o %t 2>/dev/null | head -n1 || true; }
up() {
  alive "$munge_pid" && alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" &&
    [[ "$(node_state)" =~ ^(idle|mix|alloc) ]]
}
logs() {
  for f in "$dir/slurmctld.log" "$dir/slurmd.log" /var/log/munge/munged.log; do
    echo "--- tail of $f" >&2 && { $sudo tail -n 25 "$f" >&2 2>/dev/null || true; }
  done
}

install_packages() {
  local packages=(slurmctld slurmd munge slurm-client) missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing Slurm packages: ${missing[*]}"
  # Without systemd the packages' postinst would start the daemons through their init scripts;
  # a temporary policy-rc.d (as in Docker images) stops that, this script starts them itself.
  local policy="" rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
  fi
  # `env` because sudo drops DEBIAN_FRONTEND from the environment; no stdin under CI.
  { $sudo apt-get update -qq </dev/null && $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null </dev/null; } || rc=$?
  [ -n "$policy" ] && $sudo rm -f "$policy"
  [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

start_munge() {
  alive "$munge_pid" && return
  # The munge postinst makes a key (mungekey -c); make one only where it is missing.
  $sudo test -s /etc/munge/munge.key ||
    $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  $sudo chown munge:munge /etc/munge /etc/munge/munge.key
  $sudo chmod 0700 /etc/munge && $sudo chmod 0400 /etc/munge/munge.key
  # systemd's RuntimeDirectory would make /run/munge (socket + pidfile); do it by hand.
  $sudo install -d -o munge -g munge -m 0755 /run/munge
  $sudo runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null || { logs; die "munged does not answer"; }
}

write_conf() {
  if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
    die "/etc/slurm/slurm.conf exists and is not ours; move it away first"
  fi
  # 95%: slurmd drains the node when it finds less memory than RealMemory.
  local mem=$(($(free -m | awk '/^Mem:/ {print $2}') * 95 / 100))
  $sudo install -d -m 0755 "$dir" "$dir/slurmctld" "$dir/slurmd" /etc/slurm
  $sudo tee "$dir/slurm.conf" >/dev/null <<EOF
# Written by saescope scripts/slurm-cluster.sh: a throwaway single-node test cluster.
ClusterName=saescope
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
# No mail package here: without this slurmctld logs "Configured MailProg is invalid".
MailProg=/bin/true
StateSaveLocation=$dir/slurmctld
SlurmdSpoolDir=$dir/slurmd
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No slurmdbd: no accounting, no job completion log (sacct does not work).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# squeue hides finished jobs at once; their records (squeue -t all, scontrol show job) go after
# MinJobAge plus the purge cycle (~15 s). KillWait: scancel'ed jobs get SIGKILL after 5 s.
MinJobAge=5
KillWait=5
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  $sudo ln -sfn "$dir/slurm.conf" /etc/slurm/slurm.conf
}

start() {
  if up; then echo "slurm cluster already up ($host)"; return; fi
  install_packages
  stop_slurm # a half-started cluster is restarted from scratch
  start_munge
  write_conf
  # -c: forget jobs and node states of an earlier run, each start gives an empty cluster.
  $sudo /usr/sbin/slurmctld -c || { logs; die "slurmctld did not start"; }
  $sudo /usr/sbin/slurmd || { logs; die "slurmd did not start"; }
  local state=""
  for _ in $(seq 60); do # 30 s
    state=$(node_state)
    case "$state" in
      idle* | mix* | alloc*) echo "slurm cluster up: node $host $state"; return ;;
      down* | drain* | drng*) $sudo scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  logs
  die "node $host not idle after 30 s (state: '${state:-no answer}')"
}

kill_pidfile() { # TERM, wait up to 10 s, then KILL
  local f=$1 pid
  alive "$f" || return 0
  pid=$(cat "$f")
  $sudo kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do $sudo kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  echo "slurm-cluster: $f ($pid) ignored SIGTERM, killing it" >&2
  $sudo kill -9 "$pid" 2>/dev/null || true
}

stop_slurm() {
  # Cancel jobs first (needs munged): their slurmstepd processes outlive slurmd otherwise.
  if alive "$munge_pid" && alive "$dir/slurmctld.pid"; then
    timeout 5 squeue -h -o %i 2>/dev/null | xargs -r $sudo scancel 2>/dev/null || true
    for _ in $(seq 20); do pgrep -x slurmstepd >/dev/null || break; sleep 0.5; done
  fi
  kill_pidfile "$dir/slurmd.pid"
  kill_pidfile "$dir/slurmctld.pid"
}

stop() { stop_slurm && kill_pidfile "$munge_pid" && echo "slurm cluster stopped"; }

status() {
  local f
  for f in "$munge_pid" "$dir/slurmctld.pid" "$dir/slurmd.pid"; do
    echo "$(basename "$f" .pid): $(alive "$f" && echo "running ($(cat "$f"))" || echo stopped)"
  done
  if up; then sinfo; else echo "cluster: down"; return 1; fi
}

case "${1:-}" in
  start | stop | status) "$1" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

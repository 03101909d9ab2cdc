#!/usr/bin/env bash
# Live Slurm test: a real single-node Slurm (Debian slurm-wlm + munge) on localhost runs the job
# array and the dependent merge job documented in docs/scaling.md (extracted from it, so the
# documentation and the test are one source) over 6 bags with `--shard auto` and `--mem`, and
# checks that the merged dataset equals one sequential run and passes `validate`. It then checks
# that Slurm kills a job that goes over its --mem (the limit is real) and that bag2dataset, given
# no --max-memory inside a job, keeps its ceiling under the job's --mem.
#
# No cgroup plugin is used (proctrack/linuxproc, task/none, jobacct_gather/linux with
# OverMemoryKill): Slurm enforces --mem on the summed RSS of the job's processes, and nothing
# creates or moves cgroups. The cluster is torn down on exit, also when the test fails.
#
# Usage: tests/slurm/run.sh [path/to/bag2dataset]   (default: target/release/bag2dataset)
# Needs root (to start munged and slurmd) and apt-get when slurm-wlm/munge are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$(realpath "${1:-target/release/bag2dataset}")
[ -x "$BIN" ] || { echo "slurm test: no binary at $BIN (cargo build --release first)"; exit 1; }
T0=$(date +%s)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm test: installing slurm-wlm and munge"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

WORK=$(mktemp -d /tmp/b2d-slurm.XXXXXX)
STATE=$WORK/state
mkdir -p "$STATE/ctld" "$STATE/d" "$WORK/bin"
export SLURM_CONF=$STATE/slurm.conf
HOST=$(hostname -s)

teardown() {
  local code=$?
  scancel --user=root >/dev/null 2>&1 || true
  local daemons=()
  for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    [ -f "$f" ] && daemons+=("$(cat "$f")")
  done
  [ ${#daemons[@]} -gt 0 ] && kill "${daemons[@]}" 2>/dev/null || true
  # Wait for the daemons to exit (they write their state on the way out).
  for _ in $(seq 50); do
    alive=0
    for p in "${daemons[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  [ -n "${MUNGE_STARTED:-}" ] && pkill -u munge -x munged 2>/dev/null || true
  if [ "$code" -ne 0 ]; then
    echo "slurm test FAILED (exit $code); logs:"
    tail -n 30 "$STATE"/*.log "$WORK"/logs/* 2>/dev/null || true
  fi
  rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK" || true; }
  exit "$code"
}
trap teardown EXIT INT TERM

# munge: the authentication Slurm needs (its key comes with the package).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  MUNGE_STARTED=1
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# The node as slurmd sees it (CPUs, memory).
NODE=$(slurmd -C | head -1)
cat >"$SLURM_CONF" <<EOF
ClusterName=b2dtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
$NODE State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
  sleep 0.2
done
sinfo -h -o %T | grep -qE '^idle' || { echo "slurm test: the node did not come up"; sinfo; exit 1; }
echo "slurm test: cluster up on $HOST ($(($(date +%s) - T0)) s)"

# The job scripts, exactly as docs/scaling.md shows them.
extract() { # $1 = name in the `<!-- job-script: NAME -->` marker
  awk -v name="$1" '
    $0 == "<!-- job-script: " name " -->" { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' docs/scaling.md
}
extract convert-array.sbatch >"$WORK/convert-array.sbatch"
extract merge.sbatch >"$WORK/merge.sbatch"
for f in convert-array.sbatch merge.sbatch; do
  grep -q '^#SBATCH' "$WORK/$f" || { echo "slurm test: no job script $f in docs/scaling.md"; exit 1; }
done

# Six bags of one recording setup (distinct sessions of the demo robot; the cameras drop
# different frames, as real ones do).
IN=$WORK/in
mkdir -p "$IN"
for n in 1 2 3 4 5 6; do "$BIN" make-demo "$IN/session-$n.bag" --session "$n" 2>/dev/null; done
ln -s "$BIN" "$WORK/bin/bag2dataset"
export PATH=$WORK/bin:$PATH

# The documented array (3 shards over 6 bags, zero-config) and the dependent merge.
export IN SHARDS=$WORK/shards OUT=$WORK/merged SETTLE=0
mkdir -p "$WORK/logs"
cd "$WORK"
ARRAY=$(sbatch --parsable --array=0-2 --mem=150M --cpus-per-task=1 --output="$WORK/logs/convert-%a.out" convert-array.sbatch)
MERGE=$(sbatch --parsable --dependency=afterok:"$ARRAY" --mem=150M --output="$WORK/logs/merge.out" merge.sbatch)
echo "slurm test: submitted array $ARRAY and merge $MERGE"
wait_job() { # waits until job $1 (and its array tasks) left the queue
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  echo "slurm test: job $1 did not finish in 300 s"; squeue; return 1
}
wait_job "$ARRAY"
wait_job "$MERGE"
for a in 0 1 2; do
  grep -q '"mode"' "$WORK/logs/convert-$a.out" || { echo "slurm test: shard task $a wrote no report"; cat "$WORK/logs/convert-$a.out"; exit 1; }
done
[ -f "$OUT/meta/info.json" ] || { echo "slurm test: the merge job did not write $OUT"; cat "$WORK/logs/merge.out"; exit 1; }
grep -h '"ceiling_source"' "$WORK"/logs/convert-*.out | sort -u
grep -q 'SLURM_MEM_PER_NODE=150' "$WORK/logs/convert-0.out" \
  || { echo "slurm test: the shard's ceiling does not come from the job's --mem"; exit 1; }

# One sequential run over the same bags must give the same dataset.
"$BIN" convert "$IN" -o "$WORK/sequential" --settle 0 --quiet
"$BIN" validate "$OUT"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import pyarrow' 2>/dev/null; then
  # A venv of our own with pyarrow, kept between runs.
  [ -x /tmp/b2d-pyarrow-venv/bin/python ] || { python3 -m venv /tmp/b2d-pyarrow-venv && /tmp/b2d-pyarrow-venv/bin/pip install -q pyarrow; }
  PY=/tmp/b2d-pyarrow-venv/bin/python
fi
"$PY" "$ROOT/tests/slurm/same_dataset.py" "$WORK/sequential" "$OUT"

# The limit is real: a job that allocates past its --mem is killed by Slurm.
cat >"$WORK/hog.sbatch" <<'EOF'
#!/bin/bash
python3 -c "
import time
b = bytearray(300 << 20)
for i in range(0, len(b), 4096): b[i] = 1
time.sleep(5)
print('survived')
"
EOF
HOG=$(sbatch --parsable --mem=100M --output="$WORK/logs/hog.out" "$WORK/hog.sbatch")
wait_job "$HOG"
if grep -q survived "$WORK/logs/hog.out"; then
  echo "slurm test: a job over its --mem was not killed: Slurm does not enforce memory here"
  exit 1
fi
echo "slurm test: a job over its --mem was killed ($(tr '\n' ' ' <"$WORK/logs/hog.out" | cut -c1-120))"

# Inside a job with --mem=100M and no --max-memory, the ceiling stays under the limit; an
# explicit --max-memory above it is refused.
cat >"$WORK/ceiling.sbatch" <<EOF
#!/bin/bash
bag2dataset convert "$IN/session-1.bag" -o "$WORK/one" --json --quiet | grep -E '"ceiling(_source)?"'
bag2dataset convert "$IN/session-1.bag" -o "$WORK/two" --max-memory 1GiB --quiet && echo accepted-1GiB
exit 0
EOF
CEIL=$(sbatch --parsable --mem=100M --output="$WORK/logs/ceiling.out" "$WORK/ceiling.sbatch")
wait_job "$CEIL"
cat "$WORK/logs/ceiling.out"
ceiling=$(grep -oE '"ceiling": [0-9]+' "$WORK/logs/ceiling.out" | grep -oE '[0-9]+$')
[ -n "$ceiling" ] && [ "$ceiling" -le $((100 << 20)) ] || { echo "slurm test: ceiling $ceiling is not under --mem=100M"; exit 1; }
if grep -q accepted-1GiB "$WORK/logs/ceiling.out"; then
  echo "slurm test: --max-memory 1GiB was accepted inside a 100M job"; exit 1
fi
grep -q 'above what this job may use' "$WORK/logs/ceiling.out" || { echo "slurm test: no clear refusal of --max-memory 1GiB"; exit 1; }

echo "slurm test: PASSED in $(($(date +%s) - T0)) s"

#!/usr/bin/env bash
# Scale-out on this machine: a 3-node Atoll cluster under a YCSB workload gets a 4th node.
#
#   bench/scale_out.sh [--duration 120s] [--join-after 20] [--records 100000] [--threads 16]
#                      [--workload a] [--split-size 2MiB] [--out FILE.md] [--keep]
#
# Starts PD and three atoll-kv nodes on loopback (free ports, scratch directory, each node with
# `--capacity 100GiB` since they share the disk, regions split at --split-size), loads
# --records records, runs `atoll bench run` for --duration, starts a fourth node --join-after
# seconds into the run, and polls PD every second until every store's region and leader counts
# are within 10% of the mean. Writes a markdown report: ops/s and p99 per second of the run,
# the region/leader counts of the stores over time, and the time from the join until balanced.
# Always stops what it started.
#
# Environment: ATOLL_BIN_DIR (default $CARGO_TARGET_DIR/release, else .../debug), BENCH_DIR.
set -euo pipefail

DURATION=120s
JOIN_AFTER=20
RECORDS=100000
THREADS=16
WORKLOAD=a
SPLIT_SIZE=2MiB
OUT=
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --join-after) JOIN_AFTER=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --workload) WORKLOAD=$2; shift 2 ;;
        --split-size) SPLIT_SIZE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "scale_out.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "scale_out.sh: $*" >&2; }
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
atoll_bins scale_out.sh
cluster_workdir atoll-scale

cat >"$WORK/kv.toml" <<EOF
[raftstore]
pd-heartbeat-tick-interval = "2s"
pd-store-heartbeat-tick-interval = "2s"
split-region-check-tick-interval = "2s"
[coprocessor]
region-split-size = "$SPLIT_SIZE"
EOF

start_pd

# stores_json: PD's store list.
stores_json() { curl -sf "http://$PD/pd/api/v1/stores" || echo '{}'; }

# counts: "OK N id:regions/leaders ..." of the Up stores: OK is 1 when every count is within 10%
# of the mean, N the number of Up stores.
counts() {
    stores_json | python3 -c '
import json, sys
d = json.load(sys.stdin)
up = [s for s in d.get("stores", []) if s["store"].get("state_name") == "Up"]
rows = [(s["store"]["id"], s["status"].get("region_count", 0), s["status"].get("leader_count", 0)) for s in up]
if not rows:
    print("0 0 none"); sys.exit()
mr = sum(r[1] for r in rows) / len(rows); ml = sum(r[2] for r in rows) / len(rows)
ok = all(abs(r[1] - mr) <= 0.1 * mr and abs(r[2] - ml) <= 0.1 * ml for r in rows)
print(int(ok), len(rows), " ".join(f"{i}:{r}/{l}" for i, r, l in sorted(rows)))'
}

for i in 1 2 3; do start_kv "$i"; done
for _ in $(seq 1 120); do
    read -r OK N ROWS <<<"$(counts)"; [ "$N" -ge 3 ] && break; sleep 1
done
log "3 stores up: $ROWS"

"$ATOLL_BIN_DIR/atoll" bench run --pd "$PD" --workload "$WORKLOAD" --records "$RECORDS" \
    --threads "$THREADS" --phase load --progress 0 >"$WORK/load.txt" 2>&1
log "loaded $RECORDS records"
# Let the splits of the load settle and PD balance the three stores.
for _ in $(seq 1 60); do read -r OK N ROWS <<<"$(counts)"; [ "$OK" = 1 ] && break; sleep 1; done
log "before the run: $ROWS"

"$ATOLL_BIN_DIR/atoll" bench run --pd "$PD" --workload "$WORKLOAD" --records "$RECORDS" \
    --threads "$THREADS" --phase run --duration "$DURATION" --progress 1s \
    >"$WORK/run.txt" 2>"$WORK/progress.txt" &
BENCH=$!
START=$(date +%s)
: >"$WORK/counts.txt"
JOINED=0; JOIN_AT=0; BALANCED_AT=
while kill -0 "$BENCH" 2>/dev/null; do
    NOW=$(( $(date +%s) - START ))
    if [ "$JOINED" = 0 ] && [ "$NOW" -ge "$JOIN_AFTER" ]; then
        start_kv 4; JOINED=1; JOIN_AT=$NOW; log "4th node started at ${NOW}s"
    fi
    read -r OK N ROWS <<<"$(counts)"
    echo "$NOW $ROWS" >>"$WORK/counts.txt"
    if [ "$JOINED" = 1 ] && [ -z "$BALANCED_AT" ] && [ "$OK" = 1 ] && [ "$N" -ge 4 ]; then
        BALANCED_AT=$NOW; log "balanced at ${NOW}s"
    fi
    sleep 1
done
wait "$BENCH" || true

REPORT=$WORK/report.md
{
    echo "# Scale-out: 3 → 4 nodes under YCSB $WORKLOAD ($(date -u +%Y-%m-%d))"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; $RECORDS records, $THREADS clients,"
    echo "region-split-size $SPLIT_SIZE; the 4th node started ${JOIN_AT}s into the run."
    if [ -n "$BALANCED_AT" ]; then
        echo "Balanced (every store's region and leader counts within 10% of the mean) $((BALANCED_AT - JOIN_AT)) s after the join."
    else
        echo "Not balanced within the run."
    fi
    echo
    echo '| second | ops/s | p99 ms | errors | stores (id:regions/leaders) |'
    echo '|---|---|---|---|---|'
    python3 - "$WORK/progress.txt" "$WORK/counts.txt" <<'PY'
import re, sys
prog = {}
for line in open(sys.argv[1]):
    m = re.search(r"\[\s*([\d.]+)s\].*?([\d.]+) ops/s\s+p99\s+([\d.]+) ms\s+errors (\d+)", line)
    if m:
        prog[int(float(m.group(1)) + 0.5)] = (m.group(2), m.group(3), m.group(4))
counts = {}
for line in open(sys.argv[2]):
    parts = line.split(" ", 1)
    if len(parts) == 2:
        counts[int(parts[0])] = parts[1].strip()
for s in sorted(prog):
    ops, p99, err = prog[s]
    print(f"| {s} | {ops} | {p99} | {err} | {counts.get(s, counts.get(s - 1, ''))} |")
PY
    echo
    echo '```'
    tail -n 20 "$WORK/run.txt"
    echo '```'
} >"$REPORT"
cat "$REPORT"
if [ -n "$OUT" ]; then cp "$REPORT" "$OUT"; log "wrote $OUT"; fi

#!/usr/bin/env bash
# A write hot spot on this machine: sequential keys inserted into a 3-node Atoll cluster.
#
#   bench/hotspot.sh [--records 100000] [--batch 1] [--threads 16] [--split-size 1MiB]
#                    [--out FILE.md] [--keep]
#
# Starts PD and three atoll-kv nodes on loopback (free ports, scratch directory, `--capacity
# 100GiB` each, regions split at --split-size), inserts --records records with ordered keys,
# --batch per request
# (`atoll bench run --phase load --key-order ordered`: every insert lands at the end of the key
# space), and samples PD every second: the region count, and the bytes written per store as
# region leaders reported them in their last heartbeat. Writes a markdown report: the per-second
# table, each store's share of the written bytes, and the load's throughput. Always stops what
# it started.
#
# Environment: ATOLL_BIN_DIR (default $CARGO_TARGET_DIR/release, else .../debug), BENCH_DIR.
set -euo pipefail

RECORDS=100000
BATCH=1
THREADS=16
SPLIT_SIZE=1MiB
OUT=
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --records) RECORDS=$2; shift 2 ;;
        --batch) BATCH=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --split-size) SPLIT_SIZE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "hotspot.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { echo "hotspot.sh: $*" >&2; }
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
atoll_bins hotspot.sh
cluster_workdir atoll-hotspot

cat >"$WORK/kv.toml" <<EOF
[raftstore]
pd-heartbeat-tick-interval = "1s"
pd-store-heartbeat-tick-interval = "2s"
split-region-check-tick-interval = "1s"
[coprocessor]
region-split-size = "$SPLIT_SIZE"
EOF
start_pd
for i in 1 2 3; do start_kv "$i"; done

# sample: "REGIONS store:bytes ..." (bytes written per leader store in the last heartbeats).
sample() {
    curl -sf "http://$PD/pd/api/v1/regions" | python3 -c '
import json, sys
d = json.load(sys.stdin)
by = {}
for r in d.get("regions", []):
    s = (r.get("leader") or {}).get("store_id")
    if s:
        by[s] = by.get(s, 0) + r.get("written_bytes", 0)
print(len(d.get("regions", [])), " ".join(f"{s}:{b}" for s, b in sorted(by.items())))' 2>/dev/null || echo "0"
}
for _ in $(seq 1 60); do
    n=$(curl -sf "http://$PD/pd/api/v1/stores" | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("stores",[])))' 2>/dev/null || echo 0)
    [ "$n" -ge 3 ] && break; sleep 1
done
sleep 3

"$ATOLL_BIN_DIR/atoll" bench run --pd "$PD" --workload put --records "$RECORDS" --key-order ordered \
    --load-batch "$BATCH" --threads "$THREADS" --phase load --progress 1s >"$WORK/load.txt" 2>"$WORK/progress.txt" &
BENCH=$!
START=$(date +%s)
: >"$WORK/samples.txt"
while kill -0 "$BENCH" 2>/dev/null; do
    echo "$(( $(date +%s) - START )) $(sample)" >>"$WORK/samples.txt"
    sleep 1
done
wait "$BENCH" || true

REPORT=$WORK/report.md
{
    echo "# Write hot spot: $RECORDS sequential inserts into 3 nodes ($(date -u +%Y-%m-%d))"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; $THREADS clients, $BATCH record(s) per request, region-split-size $SPLIT_SIZE."
    echo
    python3 - "$WORK/samples.txt" "$WORK/progress.txt" <<'PY'
import re, sys
prog = {}
for line in open(sys.argv[2]):
    m = re.search(r"\[\s*([\d.]+)s\].*?([\d.]+) ops/s", line)
    if m:
        prog[int(float(m.group(1)) + 0.5)] = m.group(2)
rows, total = [], {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 2:
        continue
    sec, regions = int(parts[0]), parts[1]
    stores = dict((int(a), int(b)) for a, b in (p.split(":") for p in parts[2:]))
    for s, b in stores.items():
        total[s] = total.get(s, 0) + b
    rows.append((sec, regions, stores))
ids = sorted(total)
grand = sum(total.values()) or 1
print("Share of the bytes written, by the store leading the region written (summed over the")
print("per-second samples): " + ", ".join(f"store {s} {100 * total[s] / grand:.0f}%" for s in ids) + ".")
print()
print("| second | inserts/s | regions | " + " | ".join(f"store {s} KiB written" for s in ids) + " |")
print("|---|---|---|" + "---|" * len(ids))
for sec, regions, stores in rows:
    print(f"| {sec} | {prog.get(sec, '')} | {regions} | " + " | ".join(str(stores.get(s, 0) // 1024) for s in ids) + " |")
PY
    echo
    echo '```'
    tail -n 8 "$WORK/load.txt"
    echo '```'
} >"$REPORT"
cat "$REPORT"
if [ -n "$OUT" ]; then cp "$REPORT" "$OUT"; log "wrote $OUT"; fi

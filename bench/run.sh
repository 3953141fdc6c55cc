#!/usr/bin/env bash
# Side-by-side queue benchmark on this machine: Switchboard (SQLite and PostgreSQL) against
# BullMQ (Redis, appendfsync everysec), graphile-worker and pg-boss (same PostgreSQL).
# Workload for all: N no-op jobs enqueued in batches of BATCH, drained at concurrency C.
# Needs: cargo, node + npm, PostgreSQL on 127.0.0.1:5432 (user postgres), redis-server.
set -euo pipefail
cd "$(dirname "$0")"
export N=${N:-100000} C=${C:-50} BATCH=${BATCH:-1000}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
REDIS_PORT=${REDIS_PORT:-6390}
export REDIS_PORT

npm install --no-audit --no-fund --silent
(cd .. && cargo build --release -q)
sb=../target/release/switchboard

tmp=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --appendonly yes --appendfsync everysec \
  --dir "$tmp" --daemonize yes --logfile "$tmp/redis.log"
trap 'redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
# Before each system: the previous one's dirty pages written out (the SQLite runs leave
# hundreds of MB behind, whose writeback would otherwise land on the next system's fsyncs)
# and PostgreSQL checkpointed.
settle() {
  sync
  psql "$PG/postgres" -qc "CHECKPOINT"
  sleep 2
}

# Completed jobs deleted on completion (as BullMQ's removeOnComplete and graphile-worker do),
# then kept for an hour (as pg-boss does).
switchboard() {
  for keep in "" --keep-completed; do
    echo "== switchboard (SQLite, synchronous=FULL) ${keep}"
    settle
    SWITCHBOARD_DATA_DIR="$tmp/sb$keep" SWITCHBOARD_LOG=warn $sb bench queue --jobs "$N" --concurrency "$C" --batch "$BATCH" $keep
    rm -rf "$tmp/sb$keep"
    echo "== switchboard (PostgreSQL) ${keep}"
    settle
    DATABASE_URL="$PG/sbbench_switchboard" SWITCHBOARD_LOG=warn $sb bench queue --jobs "$N" --concurrency "$C" --batch "$BATCH" $keep
  done
}

peers() {
  echo "== bullmq (Redis, appendfsync everysec)"
  settle
  node bullmq.mjs || echo "FAILED: bullmq.mjs"
  echo "== graphile-worker (PostgreSQL)"
  settle
  PG_URL="$PG/sbbench_graphile" node graphile.mjs || echo "FAILED: graphile.mjs"
  echo "== pg-boss (PostgreSQL)"
  settle
  PG_URL="$PG/sbbench_pgboss" node pgboss.mjs || echo "FAILED: pgboss.mjs"
}

# This VM's speed drifts by tens of percent within minutes, so one pass in a fixed order
# favours whoever runs in the faster stretch. ROUNDS passes (default 2) alternate the order
# (Switchboard first, then the peers first), each on fresh databases; compare within a round.
ROUNDS=${ROUNDS:-2}
for round in $(seq 1 "$ROUNDS"); do
  echo "#### round $round"
  for db in sbbench_switchboard sbbench_graphile sbbench_pgboss; do
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  done
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  if (( round % 2 )); then switchboard; peers; else peers; switchboard; fi
done | tee "$tmp/out"

# End-to-end jobs/s per round and system, and each against graphile-worker's in its round.
echo "#### end to end, jobs/s"
awk '
  /^#### round/ { r = $3 }
  /^== / { sys = substr($0, 4) }
  /^end to end/ { e2e[r, sys] = $4; order[++n] = r SUBSEP sys }
  /"end_to_end_per_sec"/ { match($0, /"end_to_end_per_sec":[0-9.]+/); v = substr($0, RSTART + 21, RLENGTH - 21)
    e2e[r, sys] = v; order[++n] = r SUBSEP sys; if (sys ~ /graphile/) g[r] = v }
  END { for (i = 1; i <= n; i++) { split(order[i], k, SUBSEP)
    printf "round %s  %-50s %8d  %5.2fx graphile-worker\n", k[1], k[2], e2e[order[i]], (g[k[1]] ? e2e[order[i]] / g[k[1]] : 0) } }
' "$tmp/out"

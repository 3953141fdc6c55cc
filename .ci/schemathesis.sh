#!/usr/bin/env bash
# Checks that the OpenAPI document tells the truth: validates it (openapi-spec-validator),
# then fuzzes every operation with schemathesis (positive and negative data) against a
# `switchboard serve` on a fresh SQLite database. Fails on any 5xx, any response whose
# status, content type, headers or body the document does not declare, and any invalid
# request the server accepts.
#
# Not checked: schemathesis' `positive_data_acceptance`, because some rules cannot be stated
# in JSON Schema (an `expires_at` in the future, an `Idempotency-Key` reused with another
# body, a push target this node may not reach); docs/api.md says so.
#
# `DELETE /v1/api-keys/{id}` runs separately with a key of its own, so the run cannot
# revoke the credential it uses; `/hooks/*` (no API key) runs separately on one worker
# (see below). Jobs are not executed (SWITCHBOARD_RUN_JOBS=false): the fuzzer's push
# targets are arbitrary hosts. Takes about three minutes on 2 cores.
#
# Check settings: .ci/schemathesis.toml. Environment: SCHEMATHESIS_EXAMPLES (cases per operation, default 100), SCHEMATHESIS_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VALIDATOR_VERSION=0.7.2
target="${CARGO_TARGET_DIR:-target}"
venv="$target/schemathesis-venv"
started=$(date +%s)

log() { printf '\n== %s\n' "$*"; }

log "schemathesis $VERSION (PyPI, in $venv)"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION" ||
  ! "$venv/bin/openapi-spec-validator" --help >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv >/dev/null ||
      { apt-get update -q && apt-get install -y -q python3-venv >/dev/null; }
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
fi
st="$(cd "$venv/bin" && pwd)/schemathesis"
config="$PWD/.ci/schemathesis.toml"
"$st" --version

# The binary the test step built (release if it is the newer one).
bin=""
for b in "$target/release/switchboard" "$target/debug/switchboard"; do
  if [ -x "$b" ] && { [ -z "$bin" ] || [ "$b" -nt "$bin" ]; }; then bin="$b"; fi
done
if [ -z "$bin" ]; then
  cargo build -q -p switchboard-server
  bin="$target/debug/switchboard"
fi
echo "binary: $bin"

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="sb_schemathesis_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
base="http://127.0.0.1:$port"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

log "switchboard serve on $base (SQLite in $data)"
env -u REDIS_URL \
  DATABASE_URL="sqlite://$data/switchboard.db" \
  SWITCHBOARD_DATA_DIR="$data" \
  SWITCHBOARD_LISTEN="127.0.0.1:$port" \
  SWITCHBOARD_BOOTSTRAP_API_KEY="$key" \
  SWITCHBOARD_BOOTSTRAP_PASSWORD="schemathesis-owner-password" \
  SWITCHBOARD_METRICS_TOKEN="$key" \
  SWITCHBOARD_RATE_LIMIT_PER_MINUTE=10000000 \
  SWITCHBOARD_RATE_LIMIT_BURST=10000000 \
  SWITCHBOARD_AUTH_RATE_LIMIT_PER_MINUTE=10000000 \
  SWITCHBOARD_HOOKS_RATE_LIMIT_PER_MINUTE=10000000 \
  SWITCHBOARD_RUN_JOBS=false \
  SWITCHBOARD_LOG_LEVEL=warn \
  "$bin" serve >"$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -sf "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$data/server.log"; exit 1; }
  sleep 0.1
done
curl -sf "$base/readyz" >/dev/null

log "openapi-spec-validator $VALIDATOR_VERSION"
curl -sf "$base/openapi.json" -o "$data/openapi.json"
"$venv/bin/openapi-spec-validator" "$data/openapi.json"

common=(
  --checks all
  --exclude-checks positive_data_acceptance
  --mode all
  --phases examples,coverage,fuzzing
  --max-examples "${SCHEMATHESIS_EXAMPLES:-100}"
  --workers 2
  --request-timeout 40
  # A claim long-polls up to 30 s (`wait_ms`); nothing else should come near.
  --max-response-time 35
  --continue-on-failure
  --no-color
)
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then common+=(--seed "$SCHEMATHESIS_SEED"); fi

# schemathesis keeps a cache of past failures (replayed first) in its working directory.
st_home="$target/schemathesis"
mkdir -p "$st_home"

status=0
log "schemathesis: every operation but DELETE /v1/api-keys/{id} and /hooks/*"
(cd "$st_home" && "$st" --config-file "$config" run "$base/openapi.json" "${common[@]}" \
  -H "Authorization: Bearer $key" \
  --exclude-operation-id revoke_key --exclude-path-regex '^/hooks/') || status=$?

# Provider callbacks (no provider registered: every call is a 404) run on one worker: two
# workers starting on two operations with path parameters at once trip a race in CPython
# 3.11's `ast` module inside hypothesis ("SystemError: AST constructor recursion depth
# mismatch"), a crash of the fuzzer, not a finding.
log "schemathesis: /hooks/*, on one worker"
(cd "$st_home" && "$st" --config-file "$config" run "$base/openapi.json" "${common[@]}" \
  --workers 1 --include-path-regex '^/hooks/') || status=$?

log "schemathesis: DELETE /v1/api-keys/{id}, with a key of its own"
own=$(curl -sf -X POST "$base/v1/api-keys" -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' \
  -d '{"name": "schemathesis revoke", "scopes": ["keys:read", "keys:write"]}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')
(cd "$st_home" && "$st" --config-file "$config" run "$base/openapi.json" "${common[@]}" \
  -H "Authorization: Bearer $own" \
  --include-operation-id revoke_key) || status=$?

if grep -q "panicked" "$data/server.log"; then
  echo "FAIL: the server panicked:" >&2
  grep -A5 "panicked" "$data/server.log" >&2
  status=1
fi
echo "schemathesis took $(($(date +%s) - started)) s (status $status)"
exit "$status"

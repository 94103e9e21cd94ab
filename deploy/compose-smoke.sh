#!/usr/bin/env bash
# Runs the README's and the operations guide's Compose path end to end against
# whatever Docker engine is running, checking each step's result, and fails
# loudly naming the step. Run it after any change to Dockerfile,
# docker-compose.yml or the deploy docs:
#
#     deploy/compose-smoke.sh            # from the repository root
#
# It uses its own Compose project (and volumes), removed at the end, and ports
# 8000 and 9090 on this host. COMPOSE overrides the command (default: `docker
# compose`, else `docker-compose`). The database password comes from
# INVARIO_DB_PASSWORD in the environment (a random one when unset), which
# Compose prefers to .env, so an operator's .env is neither read nor touched.
# The monitoring step needs a Prometheus image: on the build machines,
# WITH_PROMETHEUS=1 ../shared/docker/setup.sh (Grafana cannot run there and is
# not started).
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -z "${COMPOSE:-}" ]]; then
    if docker compose version > /dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE="docker-compose"; fi
fi
PROJECT="invario-smoke-$$"
compose() { $COMPOSE -p "$PROJECT" "$@"; }
INVARIO_DB_PASSWORD="${INVARIO_DB_PASSWORD:-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
export INVARIO_DB_PASSWORD
unset INVARIO_DB_NAME
WORK="$(mktemp -d)"
STEP="start"
started=$SECONDS

finish() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        echo "❌ compose smoke FAILED at step: $STEP (exit $status)" >&2
        compose logs --tail 40 api >&2 || true
    fi
    compose --profile monitoring down -v --remove-orphans > /dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $status
}
trap finish EXIT

step() { STEP="$1"; echo "== [+$((SECONDS - started))s] $STEP"; }
fail() { echo "❌ $STEP: $*" >&2; exit 1; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    for _ in $(seq "$limit"); do
        if "$@" > /dev/null 2>&1; then return 0; fi
        sleep 1
    done
    fail "timed out after ${limit}s waiting for $what"
}

step "the compose file refuses to start without a database password"
if out=$(INVARIO_DB_PASSWORD= compose config -q 2>&1); then fail "docker-compose.yml accepted an empty INVARIO_DB_PASSWORD"; fi
grep -q "INVARIO_DB_PASSWORD" <<< "$out" || fail "the refusal does not name INVARIO_DB_PASSWORD: $out"

step "build the image"
compose build api

step "start PostgreSQL"
compose up -d postgres
wait_for 90 "postgres to be healthy" compose exec -T postgres pg_isready -U invario -d invario

step "migrate"
out=$(compose run --rm api invario migrate)
echo "$out"
grep -q "Applied migration" <<< "$out" || fail "no migration applied: $out"

step "create the checkpoint key"
compose run --rm api invario checkpoint-key generate --origin ledger.example.com/payments \
    --out /var/lib/invario/keys/checkpoint.key > "$WORK/vkey" 2> /dev/null
VKEY=$(grep -m1 '+' "$WORK/vkey" | tr -d '[:space:]')
[[ "$VKEY" == ledger.example.com/payments+* ]] || fail "no verifier key printed: $(cat "$WORK/vkey")"

step "start the API"
compose up -d api
wait_for 120 "GET /readyz" curl -fsS http://127.0.0.1:8000/readyz

step "create a key"
out=$(compose exec -T api invario create-key --owner "ClientName" --scopes '{"write": true, "read": true}')
KEY=$(grep -o 'inv_live_[A-Za-z0-9]*' <<< "$out" | head -1)
[[ -n "$KEY" ]] || fail "no key printed: $out"

step "POST a transaction (201)"
for n in 1 2 3; do
    status=$(curl -s -o "$WORK/receipt" -w '%{http_code}' -X POST http://127.0.0.1:8000/v1/transactions \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"transaction_id\": \"0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a1$n\", \"amount\": \"100.50\", \"currency\": \"BRL\"}")
    [[ "$status" == 201 ]] || fail "POST answered $status: $(cat "$WORK/receipt")"
done
wait_for 30 "a checkpoint of 3 entries" bash -c \
    "curl -fsS -H 'Authorization: Bearer $KEY' http://127.0.0.1:8000/v1/ledger/checkpoint | sed -n 2p | grep -qx 3"

step "/health and verify"
curl -fsS http://127.0.0.1:8000/health | grep -q '"status":"ok"' || fail "/health is not ok"
compose exec -T api invario verify | grep -q "Ledger intact: 3 entries" || fail "verify did not find 3 intact entries"

step "back up (pg_dump in the postgres container)"
compose exec -T postgres pg_dump --serializable-deferrable -U invario invario > "$WORK/backup.sql"
grep -q "COPY public.ledger_entries" "$WORK/backup.sql" || fail "the dump holds no ledger_entries"

step "restore into a fresh database; verify --checkpoints passes"
compose exec -T postgres createdb -U invario restored
compose exec -T postgres psql -q -U invario -d restored -v ON_ERROR_STOP=1 < "$WORK/backup.sql" > /dev/null
out=$(INVARIO_DB_NAME=restored compose run --rm api \
    invario verify --checkpoints /var/lib/invario/checkpoints --vkey "$VKEY")
echo "$out"
grep -q "passes through every signed checkpoint" <<< "$out" || fail "the restored ledger did not verify against the checkpoints"

step "the database refuses a wrong password"
if compose run --rm -e DATABASE_URL=postgres://invario:wrong@postgres:5432/invario api invario verify > "$WORK/wrong" 2>&1; then
    fail "verify connected with a wrong password"
fi
grep -qi "password authentication failed" "$WORK/wrong" || fail "no authentication failure: $(cat "$WORK/wrong")"

step "stop; verify with the API stopped; down and up keep the head"
head_before=$(curl -fsS -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/ledger/head)
compose stop api
compose run --rm api invario verify | grep -q "Ledger intact: 3 entries" || fail "verify (run --rm) did not find 3 intact entries"
compose down
compose up -d api
wait_for 120 "GET /readyz after down + up" curl -fsS http://127.0.0.1:8000/readyz
head_after=$(curl -fsS -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/ledger/head)
[[ "$head_before" == "$head_after" ]] || fail "the head changed: $head_before → $head_after"

step "disaster recovery: restore the backup into invario itself and serve it"
compose stop api
compose exec -T postgres dropdb -U invario invario
compose exec -T postgres createdb -U invario invario
compose exec -T postgres psql -q -U invario -d invario -v ON_ERROR_STOP=1 < "$WORK/backup.sql" > /dev/null
compose run --rm api invario verify --checkpoints /var/lib/invario/checkpoints --vkey "$VKEY" \
    | grep -q "passes through every signed checkpoint" || fail "the restored invario did not verify against the checkpoints"
compose up -d api
wait_for 120 "GET /readyz after the restore" curl -fsS http://127.0.0.1:8000/readyz
curl -fsS http://127.0.0.1:8000/health | grep -q '"status":"ok"' || fail "/health is not ok after the restore"
head_restored=$(curl -fsS -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/ledger/head)
[[ "$head_before" == "$head_restored" ]] || fail "the restored head differs: $head_before → $head_restored"

step "monitoring profile: Prometheus scrapes the API and loads the alerts"
compose --profile monitoring up -d prometheus \
    || fail "no Prometheus image (on the build machines: WITH_PROMETHEUS=1 ../shared/docker/setup.sh)"
wait_for 60 "Prometheus to be ready" curl -fsS http://127.0.0.1:9090/-/ready
wait_for 60 "the invario target to be up" bash -c \
    "curl -fsS http://127.0.0.1:9090/api/v1/targets | grep -q '\"job\":\"invario\".*\"health\":\"up\"'"
curl -fsS http://127.0.0.1:9090/api/v1/rules | grep -q '"name":"InvarioLedgerIntegrityBroken"' \
    || fail "Prometheus did not load deploy/prometheus/alerts.yml"

step "a tampered row: /health 503 and the integrity gauge 0"
compose exec -T postgres psql -q -U invario -d invario -v ON_ERROR_STOP=1 -c \
    "ALTER TABLE transactions DISABLE TRIGGER USER; UPDATE transactions SET amount = 1000.50 WHERE transaction_id = '0b6a5e0c-3f39-4c55-9c55-7e4c3f3d2a12'; ALTER TABLE transactions ENABLE TRIGGER USER;" > /dev/null
compose restart api
wait_for 120 "/health to answer 503 corrupted" bash -c \
    "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/health | grep -qx 503"
curl -s http://127.0.0.1:8000/health | grep -q '"status":"corrupted"' || fail "/health does not say corrupted"
curl -fsS http://127.0.0.1:8000/metrics | grep -q '^invario_ledger_integrity_status{ledger="default"} 0' \
    || fail "the integrity gauge is not 0"
wait_for 90 "Prometheus to fire InvarioLedgerIntegrityBroken" bash -c \
    "curl -fsS http://127.0.0.1:9090/api/v1/alerts | grep -q '\"alertname\":\"InvarioLedgerIntegrityBroken\".*\"state\":\"firing\"'"

STEP="done"
echo "✅ compose smoke passed in $((SECONDS - started))s: migrate, key, up, create-key, POST 201, verify, backup → restore → verify --checkpoints, down + up keep the head, DR restore served, Prometheus scraping with the alerts, tamper → /health 503, gauge 0 and the alert firing"

#!/usr/bin/env bash
# Make a PostgreSQL server available for the tests (the PostgreSQL store and the two-replica tests):
# install Debian's postgresql if missing, start its cluster, create the test role and database.
# Idempotent and quick when everything is already there. Prints the DSN the tests use; .ci/run exports
# it as ITSM_TEST_POSTGRES_DSN. Needs root (or sudo): the cluster is started as its owner.
set -euo pipefail

ROLE=itsm
PASSWORD=itsm-test-only
DATABASE=itsm_test
PORT=5432

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

if ! command -v pg_lsclusters >/dev/null 2>&1 || [[ -z "$(pg_lsclusters -h 2>/dev/null)" ]]; then
    if ! apt-cache show postgresql >/dev/null 2>&1; then
        "${SUDO[@]}" apt-get update -qq
    fi
    # policy-rc.d: keep the packaged service from starting by itself (we start the cluster below).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
        trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# The first cluster Debian created (15/main on bookworm).
read -r VERSION CLUSTER CPORT STATUS _ < <(pg_lsclusters -h | head -n1)
PORT=$CPORT
if [[ "$STATUS" != online* ]]; then
    "${SUDO[@]}" pg_ctlcluster "$VERSION" "$CLUSTER" start
fi

psql_admin() {
    "${SUDO[@]}" runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qAtX "$@"
}
# Wait until it accepts connections (a fresh start may take a moment).
for _ in $(seq 1 50); do
    if psql_admin -c "SELECT 1" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done
if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]]; then
    # CREATEDB: each test module gets a database of its own (created and dropped by the tests).
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]]; then
    "${SUDO[@]}" runuser -u postgres -- createdb -p "$PORT" -O "$ROLE" "$DATABASE"
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"

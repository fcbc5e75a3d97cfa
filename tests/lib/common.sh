# Shared helpers for integration tests: a throw-away PostgreSQL cluster on a
# unix socket in a temp dir, waiting for conditions instead of sleeping, and
# small assertion helpers. Source it from a test:  . "$MAM_SRC/tests/lib/common.sh"
#
# Every test runs with `set -euo pipefail`; cleanup happens in an EXIT trap that
# stops PostgreSQL and any daemon the test started, and removes the temp dir
# unless MAM_KEEP_TMP=1.
set -euo pipefail
umask 022

: "${MAM_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${MAM_BIN:=$MAM_SRC/build/mam-ingest}"
export MAM_SRC MAM_BIN

T=$(mktemp -d /tmp/mamtest.XXXXXX)
chmod 755 "$T"
export T
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
export PGBIN
_pids=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
skip() { log "SKIP: $*"; exit 77; }

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start [name]: initdb + pg_ctl start in $T/pg<name>; exports PGHOST, PGPORT,
# PGUSER, PGDATABASE=mam so libpq (daemon and psql) reach it with no conninfo.
pg_start() {
	local name=${1:-} dir="$T/pg${1:-}"
	mkdir -p "$dir/data" "$dir/sock"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
	as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; fail "initdb failed"; }
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir/sock'
fsync = on
max_connections = 100
shared_buffers = 128MB
log_min_messages = warning
CONF
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ cat "$dir/server.log" >&2; fail "postgres did not start"; }
	export PGHOST="$dir/sock" PGPORT=5432 PGUSER=postgres PGDATABASE=mam
	as_pg "$PGBIN/createdb" -h "$PGHOST" -U postgres mam
	PG_DIRS+=("$dir")
}
PG_DIRS=()

# pg_add_standby DIR: a streaming standby of the running cluster (pg_start)
# in DIR (pg_basebackup -R, its own socket DIR/sock), started and checked to
# be in recovery. Sets SB_HOST to its socket directory.
pg_add_standby() {
	local sb=$1
	mkdir -p "$sb/sock"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$sb"
	as_pg "$PGBIN/pg_basebackup" -h "$PGHOST" -U postgres -D "$sb/data" -R -X stream -c fast \
		>"$sb.basebackup.log" 2>&1 || { cat "$sb.basebackup.log" >&2; fail "pg_basebackup failed"; }
	echo "unix_socket_directories = '$sb/sock'" >>"$sb/data/postgresql.conf"
	PG_DIRS+=("$sb")
	as_pg "$PGBIN/pg_ctl" -D "$sb/data" -l "$sb/server.log" -w -t 60 start >/dev/null ||
		{ cat "$sb/server.log" >&2; fail "standby did not start"; }
	SB_HOST=$sb/sock
	[ "$(PGHOST=$SB_HOST psql_q "SELECT pg_is_in_recovery()")" = t ] || fail "standby not in recovery"
}

pg_stop_cluster() { as_pg "$PGBIN/pg_ctl" -D "${1:-$T/pg}/data" -m fast -w stop >/dev/null 2>&1 || true; }
pg_start_cluster() { as_pg "$PGBIN/pg_ctl" -D "${1:-$T/pg}/data" -l "${1:-$T/pg}/server.log" -w -t 60 start >/dev/null; }

# psql_q SQL: one value/rows, unaligned, tuples only, stop on error.
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }

# wait_for TIMEOUT_S DESCRIPTION CMD...: poll CMD every 50 ms until it succeeds.
wait_for() {
	local timeout=$1 what=$2 deadline
	shift 2
	deadline=$(($(date +%s%N) / 1000000 + timeout * 1000))
	while ! "$@" >/dev/null 2>&1; do
		if [ $(($(date +%s%N) / 1000000)) -gt "$deadline" ]; then
			fail "timed out after ${timeout}s waiting for: $what"
		fi
		sleep 0.05
	done
}

# wait_sql TIMEOUT SQL EXPECTED: wait until SQL returns EXPECTED.
wait_sql() {
	local timeout=$1 sql=$2 want=$3
	_sql_is() { [ "$(psql_q "$1" 2>/dev/null)" = "$2" ]; }
	wait_for "$timeout" "[$sql] = $want" _sql_is "$sql" "$want"
}

assert_eq() { [ "$1" = "$2" ] || fail "${3:-value}: expected [$2], got [$1]"; }

# start_daemon ARGS...: start mam-ingest in the background, log to $T/daemon.log.
start_daemon() {
	"$MAM_BIN" "$@" >>"$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	_pids+=("$DAEMON_PID")
}
stop_daemon() {
	local pid=${1:-$DAEMON_PID}
	kill -TERM "$pid" 2>/dev/null || return 0
	wait "$pid" 2>/dev/null || true
}

# migrate: apply migrations to the test database.
migrate() { "$MAM_BIN" migrate -c "$1"; }

sha256() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }

_cleanup() {
	local rc=$? p d
	for p in "${_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for d in "${PG_DIRS[@]}"; do pg_stop_cluster "$d"; done
	if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
		log "test failed (rc=$rc); daemon log tail:"
		tail -n 40 "$T/daemon.log" 2>/dev/null >&2 || true
	fi
	if [ "${MAM_KEEP_TMP:-0}" = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
	exit $rc
}
trap _cleanup EXIT

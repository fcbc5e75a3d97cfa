# Shared helpers for the catalogue tests (tests/integration/ingest_*.sh, issue 4).
#
# Source it after tests/lib/common.sh. It adds: the config header every test
# uses, a daemon starter that keeps one log per daemon, a bounded SIGTERM, the
# exit summary line, file generators with a manifest of checksums computed by
# `openssl dgst -sha256` before the files are dropped, phase timings on stderr,
# and check_invariant, the "exactly once" check every test ends with.
#
# The invariant is checked set-based in one psql session (the manifest is
# \copy'd into a temp table) and the files are hashed with one openssl per
# thousand paths, so it stays cheap at 10,000 files.
#
# Run directly (bash lib_ingest.sh, which is how CTest runs it), it is a test
# of check_invariant itself: it ingests three files, checks that the invariant
# holds, then breaks the catalogue or the files in several ways and checks
# that each one is caught. A checker that cannot fail proves nothing.

# ---- environment -----------------------------------------------------------

# ing_require: skip (77) when something this machine genuinely lacks is
# missing; a missing mam-ingest binary is a build failure, not a skip.
ing_require() {
	local c
	for c in openssl psql split find xargs "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
	done
	[ -x "$PGBIN/initdb" ] || skip "PostgreSQL server binaries not found (PGBIN=$PGBIN)"
	[ -x "$MAM_BIN" ] || fail "mam-ingest binary not found at $MAM_BIN (build it first)"
}

# Phase timings: phase_begin NAME ... phase_end prints "TIMING NAME: N ms".
_phase_name=
_phase_t0=0
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
phase_begin() {
	_phase_name=$1
	_phase_t0=$(now_ms)
	log "phase: $1"
}
phase_end() {
	local ms=$(($(now_ms) - _phase_t0))
	log "TIMING ${_phase_name}: ${ms} ms${1:+ ($1)}"
	PHASE_MS=$ms
}

# cfg_header [SETTLE_MS]: the database and ingest sections of a test config.
# The database is the PG* environment pg_start exported.
cfg_header() {
	cat <<EOF
database:
  conninfo: ""
ingest:
  settle_ms: ${1:-300}
  batch_max_files: 500
  batch_max_ms: 20
  reconcile_interval_s: 3600
EOF
}

# cfg_tenant FILE SETTLE_MS CODE NAME PATH [FOLDER_KEY...]: a whole config
# with one tenant and one drop folder (metadata jobs); each FOLDER_KEY
# ("after_ingest: move", ...) is one more line of the folder. Finished
# (cfg_finish) when written.
cfg_tenant() {
	local file=$1 settle=$2 code=$3 name=$4 path=$5 k
	shift 5
	{
		cfg_header "$settle"
		printf 'tenants:\n  - code: %s\n    name: %s\n    drop_folders:\n      - path: %s\n' \
			"$code" "$name" "$path"
		for k in "$@"; do printf '        %s\n' "$k"; done
		printf '        jobs: [metadata]\n'
	} >"$file"
	cfg_finish "$file"
}

# cfg_finish FILE: the daemon refuses a group/world-writable config.
cfg_finish() { chmod 644 "$1"; }

# ing_migrate CFG: apply the migrations, fail loudly.
ing_migrate() {
	"$MAM_BIN" migrate -c "$1" >"$T/migrate.log" 2>&1 ||
		{ cat "$T/migrate.log" >&2; fail "migrate failed"; }
}

# ---- daemons -----------------------------------------------------------------

# daemon_run CFG [LOG]: start `mam-ingest run` in the background with its own
# log (default $T/daemon.log, which common.sh prints on failure); sets DPID.
daemon_run() {
	local cfg=$1 lg=${2:-$T/daemon.log}
	"$MAM_BIN" run -c "$cfg" >>"$lg" 2>&1 &
	DPID=$!
	_pids+=("$DPID")
}

daemon_alive() { kill -0 "$1" 2>/dev/null; }

# _forget_pid PID: a reaped daemon leaves common.sh's kill-at-exit list, so
# the cleanup never signals a recycled pid.
_forget_pid() {
	local p keep=()
	for p in "${_pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	_pids=("${keep[@]}")
}

# daemon_term PID [TIMEOUT_S]: SIGTERM, wait at most TIMEOUT_S for the exit,
# and fail unless it exits with status 0. A daemon that dies by itself before
# the SIGTERM is a failure too.
daemon_term() {
	local pid=$1 timeout=${2:-60} rc=0
	if ! daemon_alive "$pid"; then
		wait "$pid" 2>/dev/null || rc=$?
		fail "daemon $pid had already exited (status $rc) before SIGTERM"
	fi
	kill -TERM "$pid"
	wait_for "$timeout" "daemon $pid to exit after SIGTERM" _pid_gone "$pid"
	wait "$pid" 2>/dev/null || rc=$?
	_forget_pid "$pid"
	[ "$rc" = 0 ] || fail "daemon $pid exited with status $rc after SIGTERM"
}
_pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# daemon_kill PID: SIGKILL and reap, quietly. Fails if the daemon had already
# died on its own (a crash is not what the test asked for).
daemon_kill() {
	local pid=$1 rc=0
	if ! daemon_alive "$pid"; then
		wait "$pid" 2>/dev/null || rc=$?
		fail "daemon $pid exited by itself (status $rc) before it was killed"
	fi
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	_forget_pid "$pid"
}

# summary LOG: the last exit summary line's fields as "hashed=N catalogued=N
# known=N failed=N"; summary_get LOG FIELD: one of them.
summary() {
	{ grep -o 'summary: hashed=[0-9]* catalogued=[0-9]* known=[0-9]* failed=[0-9]*' "$1" || true; } |
		tail -1 | sed 's/^summary: //'
}
summary_get() {
	local s
	s=$(summary "$1")
	[ -n "$s" ] || fail "no summary line in $1"
	printf '%s\n' "$s" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# wait_log TIMEOUT LOG PATTERN [COUNT]: wait until PATTERN (grep -E) occurs
# at least COUNT times in LOG.
wait_log() {
	local timeout=$1 lg=$2 pat=$3 n=${4:-1}
	_log_has() { [ "$(grep -cE -- "$2" "$1" 2>/dev/null || true)" -ge "$3" ]; }
	wait_for "$timeout" "$n x /$pat/ in $(basename "$lg")" _log_has "$lg" "$pat" "$n"
}
count_log() { grep -cE -- "$2" "$1" 2>/dev/null || true; }

# asset_count TENANT: original assets of a tenant.
asset_count() {
	psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		WHERE t.code = '$1' AND a.parent_id IS NULL"
}
# wait_assets TIMEOUT TENANT N
wait_assets() {
	wait_sql "$1" "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		WHERE t.code = '$2' AND a.parent_id IS NULL" "$3"
}

# ---- files -------------------------------------------------------------------

# gen_files DIR N MINSIZE MAXSIZE [PREFIX]: N files of random content and
# random size in [MINSIZE, MAXSIZE], named PREFIX00001.bin ...
gen_files() {
	local dir=$1 n=$2 lo=$3 hi=$4 pfx=${5:-f} i
	mkdir -p "$dir"
	for ((i = 1; i <= n; i++)); do
		head -c $((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1))) /dev/urandom \
			>"$dir/$(printf '%s%05d.bin' "$pfx" "$i")"
	done
}

# gen_split DIR N SIZE [PREFIX]: N files of SIZE random bytes, cut from one
# stream by split (one process for any N, for the big bursts).
gen_split() {
	local dir=$1 n=$2 size=$3 pfx=${4:-f}
	mkdir -p "$dir"
	head -c $((n * size)) /dev/urandom | split -b "$size" -a 5 -d --additional-suffix=.bin - "$dir/$pfx"
}

# manifest DIR: "sha256<TAB>relpath" for every file under DIR, sorted by
# path. Computed before the files are dropped.
manifest() {
	(cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort |
		xargs -r -d '\n' -n 1000 openssl dgst -sha256 -r) |
		sed -e 's/^\([0-9a-f]\{64\}\) \*/\1\t/'
}

# manifest_distinct FILE: the checks below assume distinct contents.
manifest_distinct() {
	local n u
	n=$(wc -l <"$1")
	u=$(cut -f1 "$1" | sort -u | wc -l)
	[ "$n" = "$u" ] || fail "manifest $1 has $n files but only $u distinct checksums"
}

# gen_burst DIR N SIZE PREFIX: N files of SIZE random bytes in DIR (gen_split)
# as a timed phase, their manifest in $T/manifest (contents checked
# distinct), and FILES=(DIR/*.bin) in name order.
gen_burst() {
	phase_begin "generate $2 files"
	gen_split "$1" "$2" "$3" "$4"
	manifest "$1" >"$T/manifest"
	manifest_distinct "$T/manifest"
	FILES=("$1"/*.bin)
	assert_eq "${#FILES[@]}" "$2" "files generated"
	phase_end
}

# wait_settled DIR [MS]: wait until every file under DIR was last changed
# (mtime and ctime) at least MS ago (default 1000), so a `scan` pass counts
# them as finished: scan ingests only files already older than settle_ms.
wait_settled() {
	_settled() {
		local newest
		newest=$(find "$1" -type f -printf '%C@\n%T@\n' | sort -n | tail -1)
		[ -z "$newest" ] && return 0
		awk -v n="$newest" -v now="$EPOCHREALTIME" -v ms="$2" 'BEGIN { exit !((now - n) * 1000 >= ms) }'
	}
	wait_for 60 "files under $1 older than ${2:-1000} ms" _settled "$1" "${2:-1000}"
}

# ---- several ingest nodes ----------------------------------------------------

# node_cfg NODE PORT FOLDER...: $T/NODE.yaml, one of several ingest nodes that
# list the same drop folders of tenant s1 (metadata jobs, after_ingest:
# leave) at settle_ms $SETTLE_MS; only the node name and the metrics port
# differ (two daemons on one machine cannot share a port).
node_cfg() {
	local node=$1 port=$2 f
	shift 2
	{
		cfg_header "$SETTLE_MS"
		printf '  node_name: %s\nmetrics:\n  listen: "127.0.0.1:%s"\n' "$node" "$port"
		printf 'tenants:\n  - code: s1\n    name: Scale test\n    drop_folders:\n'
		for f in "$@"; do
			printf '      - path: %s\n        after_ingest: leave\n        jobs: [metadata]\n' "$f"
		done
	} >"$T/$node.yaml"
	cfg_finish "$T/$node.yaml"
}

# owned PORT: the sum of mam_ingest_folder_owned over the daemon's folders
# (fails unless its /metrics lists $NFOLDERS folders); owned_is PORT N.
owned() {
	curl -sf "http://127.0.0.1:$1/metrics" |
		awk -v want="$NFOLDERS" '/^mam_ingest_folder_owned\{/ { s += $NF; n++ }
			END { if (n != want) exit 1; print s }'
}
owned_is() { [ "$(owned "$1")" = "$2" ]; }

# ---- the invariant -----------------------------------------------------------

# check_invariant TENANT MANIFEST "JOBS" [LOCATION_PREFIX]
#
# For every file in MANIFEST (distinct contents): exactly one original asset
# of TENANT with that checksum; exactly one 'original' storage location for
# it, primary, same checksum and tenant, whose path is an existing regular
# file whose `openssl dgst -sha256` is that checksum (and lies under
# LOCATION_PREFIX when given); each job type of JOBS (space separated) exactly
# once, pending, and no other job; status processing with jobs, available
# without; no asset, location or job of the tenant beyond these; the asset
# count equals the file count. Fails with the first violations listed.
check_invariant() {
	local tenant=$1 man=$2 jobs=$3 prefix=${4:-} out nfiles bad
	nfiles=$(wc -l <"$man")
	# The manifest travels inline, as COPY data in the script itself.
	out=$({
		printf 'CREATE TEMP TABLE m (sha text, rel text);\nCOPY m FROM STDIN;\n'
		cat "$man"
		printf '\\.\n'
		cat <<'SQL'
CREATE TEMP TABLE a AS
	SELECT a.* FROM assets a JOIN tenants t ON t.id = a.tenant_id
	 WHERE t.code = :'tenant' AND a.parent_id IS NULL;
CREATE TEMP TABLE jt AS SELECT unnest(string_to_array(:'jobs', ' ')) AS job_type;
SELECT 'E', 'tenant ' || :'tenant' || ' does not exist'
 WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE code = :'tenant');
SELECT 'E', 'asset count ' || (SELECT count(*) FROM a) || ' != file count ' || (SELECT count(*) FROM m)
 WHERE (SELECT count(*) FROM a) <> (SELECT count(*) FROM m);
SELECT 'E', 'file ' || m.rel || ' (sha256 ' || m.sha || ') has ' || count(a.id) || ' assets'
  FROM m LEFT JOIN a ON a.checksum_sha256 = m.sha
 GROUP BY m.sha, m.rel HAVING count(a.id) <> 1;
SELECT 'E', 'asset ' || a.id || ' has checksum ' || coalesce(a.checksum_sha256, 'NULL')
	|| ' that is no dropped file''s'
  FROM a WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.sha = a.checksum_sha256);
SELECT 'E', 'asset ' || a.id || ' has ' || count(l.id) || ' original storage locations'
  FROM a LEFT JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
 GROUP BY a.id HAVING count(l.id) <> 1;
SELECT 'E', 'asset ' || a.id || ' location ' || l.id || ' is_primary=' || coalesce(l.is_primary::text, 'NULL')
	|| ' checksum=' || coalesce(l.checksum_sha256, 'NULL') || ' tenant_ok=' || (l.tenant_id = a.tenant_id)
  FROM a JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
 WHERE l.is_primary IS NOT TRUE OR l.checksum_sha256 IS DISTINCT FROM a.checksum_sha256
    OR l.tenant_id IS DISTINCT FROM a.tenant_id;
SELECT 'E', 'asset ' || a.id || ' primary_storage_path ' || coalesce(a.primary_storage_path, 'NULL')
	|| ' != location path ' || l.path
  FROM a JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
 WHERE a.primary_storage_path IS DISTINCT FROM l.path;
SELECT 'E', 'asset ' || a.id || ' location path ' || l.path || ' not under ' || :'prefix'
  FROM a JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
 WHERE :'prefix' <> '' AND left(l.path, length(:'prefix') + 1) <> :'prefix' || '/';
SELECT 'E', 'asset ' || a.id || ' job ' || jt.job_type || ' present ' || count(j.id) || ' times'
  FROM a CROSS JOIN jt LEFT JOIN ingest_jobs j ON j.asset_id = a.id AND j.job_type = jt.job_type
 GROUP BY a.id, jt.job_type HAVING count(j.id) <> 1;
SELECT 'E', 'asset ' || a.id || ' has unexpected job ' || j.job_type
  FROM a JOIN ingest_jobs j ON j.asset_id = a.id
 WHERE j.job_type NOT IN (SELECT job_type FROM jt);
SELECT 'E', 'job ' || j.id || ' of asset ' || a.id || ' has status ' || coalesce(j.status, 'NULL')
	|| ', tenant_ok=' || (j.tenant_id = a.tenant_id)
  FROM a JOIN ingest_jobs j ON j.asset_id = a.id
 WHERE j.status IS DISTINCT FROM 'pending' OR j.tenant_id IS DISTINCT FROM a.tenant_id;
SELECT 'E', 'asset ' || a.id || ' status ' || coalesce(a.status, 'NULL') || ' with '
	|| (SELECT count(*) FROM jt) || ' job types configured'
  FROM a WHERE a.status IS DISTINCT FROM
	CASE WHEN (SELECT count(*) FROM jt) > 0 THEN 'processing' ELSE 'available' END;
SELECT 'E', 'storage location ' || l.id || ' of the tenant points at no asset (' || l.asset_id || ')'
  FROM asset_storage_locations l JOIN tenants t ON t.id = l.tenant_id
 WHERE t.code = :'tenant' AND NOT EXISTS (SELECT 1 FROM assets x WHERE x.id = l.asset_id);
SELECT 'E', 'job ' || j.id || ' of the tenant points at no asset (' || coalesce(j.asset_id::text, 'NULL') || ')'
  FROM ingest_jobs j JOIN tenants t ON t.id = j.tenant_id
 WHERE t.code = :'tenant' AND NOT EXISTS (SELECT 1 FROM assets x WHERE x.id = j.asset_id);
SELECT 'P', l.checksum_sha256, l.path
  FROM a JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
 ORDER BY l.path;
SQL
	} | psql -X -q -v ON_ERROR_STOP=1 -At -F $'\t' -v tenant="$tenant" -v jobs="$jobs" \
		-v prefix="$prefix" 2>&1) || fail "invariant query failed: $out"
	bad=$(printf '%s\n' "$out" | { grep '^E' || true; } | cut -f2- | head -20)
	[ -z "$bad" ] || fail "invariant broken for tenant $tenant:
$bad"
	# The files themselves: each location path exists and has the checksum.
	printf '%s\n' "$out" | { grep '^P' || true; } | cut -f2- >"$T/inv.expect"
	local sha path missing=0
	: >"$T/inv.paths"
	while IFS=$'\t' read -r sha path; do
		if [ ! -f "$path" ] || [ -L "$path" ]; then
			missing=$((missing + 1))
			if [ $missing -le 10 ]; then
				log "location path is not an existing regular file: $path"
			fi
		else
			printf '%s\n' "$path" >>"$T/inv.paths"
		fi
	done <"$T/inv.expect"
	[ $missing = 0 ] || fail "invariant broken for tenant $tenant: $missing location paths do not exist"
	xargs -r -d '\n' -n 1000 openssl dgst -sha256 -r <"$T/inv.paths" |
		sed 's/^\([0-9a-f]\{64\}\) \*/\1\t/' | LC_ALL=C sort -t$'\t' -k2 >"$T/inv.actual"
	LC_ALL=C sort -t$'\t' -k2 "$T/inv.expect" >"$T/inv.expect.sorted"
	if ! cmp -s "$T/inv.expect.sorted" "$T/inv.actual"; then
		diff "$T/inv.expect.sorted" "$T/inv.actual" | head -20 >&2
		fail "invariant broken for tenant $tenant: file contents differ from the recorded checksums"
	fi
	log "invariant holds for tenant $tenant: $nfiles files, each exactly once${jobs:+ with jobs [$jobs]}"
}

# ---- self-test of check_invariant ------------------------------------------

_selftest_expect_broken() {
	local what=$1
	shift
	if ("$@") 2>"$T/selftest.err"; then
		fail "check_invariant did not notice: $what"
	fi
	log "caught as expected: $what ($(tr '\n' ' ' <"$T/selftest.err" | grep -oE 'invariant broken.{0,160}' | head -1))"
}

_ing_selftest() {
	. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
	ing_require
	local drop=$T/drop man=$T/manifest cfg=$T/mam.yaml path aid
	mkdir -p "$drop"
	pg_start
	{
		cfg_header 300
		cat <<EOF
tenants:
  - code: st
    name: Self test
    drop_folders:
      - path: $drop
        jobs: [metadata, thumbnail]
EOF
	} >"$cfg"
	cfg_finish "$cfg"
	ing_migrate "$cfg"
	gen_files "$T/src" 3 1000 5000 s
	manifest "$T/src" >"$man"
	cp "$T"/src/* "$drop/"
	wait_settled "$drop"
	"$MAM_BIN" scan -c "$cfg" >>"$T/daemon.log" 2>&1 || fail "scan failed"
	check_invariant st "$man" "metadata thumbnail"

	# Each break is undone before the next one.
	path=$(psql_q "SELECT l.path FROM asset_storage_locations l JOIN tenants t ON t.id = l.tenant_id
		       WHERE t.code = 'st' ORDER BY l.path LIMIT 1")
	aid=$(psql_q "SELECT asset_id FROM asset_storage_locations WHERE path = '$path'")
	cp "$path" "$T/saved"
	printf 'x' >>"$path"
	_selftest_expect_broken "a location file whose content changed" check_invariant st "$man" "metadata thumbnail"
	rm "$path"
	_selftest_expect_broken "a location file that is missing" check_invariant st "$man" "metadata thumbnail"
	cp "$T/saved" "$path"
	check_invariant st "$man" "metadata thumbnail"
	_selftest_expect_broken "a job type that is not configured" check_invariant st "$man" "metadata"
	_selftest_expect_broken "a configured job type that is missing" check_invariant st "$man" "metadata thumbnail proxy"
	{ cat "$man"; printf '%064d\textra.bin\n' 0; } >"$T/manifest.extra"
	_selftest_expect_broken "a file that is not catalogued" \
		check_invariant st "$T/manifest.extra" "metadata thumbnail"
	psql_q "INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, status)
		SELECT tenant_id, asset_id, job_type, status FROM ingest_jobs
		 WHERE asset_id = '$aid' AND job_type = 'metadata'" >/dev/null
	_selftest_expect_broken "a job recorded twice" check_invariant st "$man" "metadata thumbnail"
	psql_q "DELETE FROM ingest_jobs WHERE id = (SELECT id FROM ingest_jobs WHERE asset_id = '$aid'
		AND job_type = 'metadata' ORDER BY created_at DESC, id LIMIT 1)" >/dev/null
	check_invariant st "$man" "metadata thumbnail"
	psql_q "INSERT INTO assets (tenant_id, title, asset_type, checksum_sha256, status)
		SELECT tenant_id, title, asset_type, checksum_sha256, status FROM assets WHERE id = '$aid'" >/dev/null
	_selftest_expect_broken "the same file catalogued twice (second asset without location)" \
		check_invariant st "$man" "metadata thumbnail"
	psql_q "DELETE FROM assets WHERE checksum_sha256 = (SELECT checksum_sha256 FROM assets WHERE id = '$aid')
		AND id <> '$aid'" >/dev/null
	psql_q "UPDATE asset_storage_locations SET is_primary = false WHERE asset_id = '$aid'" >/dev/null
	_selftest_expect_broken "a location that is not primary" check_invariant st "$man" "metadata thumbnail"
	psql_q "UPDATE asset_storage_locations SET is_primary = true WHERE asset_id = '$aid'" >/dev/null
	_selftest_expect_broken "a location outside the expected prefix" \
		check_invariant st "$man" "metadata thumbnail" "$T/elsewhere"
	check_invariant st "$man" "metadata thumbnail" "$drop"
	log "check_invariant self-test passed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	_ing_selftest
fi

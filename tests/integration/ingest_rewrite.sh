#!/usr/bin/env bash
# ingest_rewrite (issue 4, "Done when"): a file rewritten while it is being
# hashed. A 400 MB file is dropped; the test watches the daemon's open file
# descriptors (/proc/PID/fdinfo) until the hasher has read part of the file,
# freezes the daemon there with SIGSTOP, changes the file (an append in one
# case, an overwrite in place that keeps the size in the other), and lets the
# daemon continue. The asset must carry the checksum of the final content, and
# there must be exactly one asset per file: the hasher notices the change,
# the file settles again and is hashed again.
#
# Catching the hasher mid-file is a race the test can lose on a slow machine
# (the hash takes ~0.2 s). A lost race is not a failure: that file is then
# simply ingested unchanged (and still checked). Each kind gets up to 4
# attempts; the test fails unless both kinds were hit at least once.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require dd
[ -d /proc/self/fdinfo ] || skip "no /proc/PID/fdinfo: cannot see where the hasher is"

SIZE=$((400 * 1024 * 1024))
MARGIN=$((8 * 1024 * 1024))
DROP=$T/drop
mkdir -p "$DROP" "$T/src"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 r1 "Rewrite test" "$DROP"
pg_start
ing_migrate "$CFG"

phase_begin "generate a 400 MB file"
head -c "$SIZE" /dev/urandom >"$T/base"
phase_end

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"

# hasher_pos FILE: sets POS to the daemon's read offset in FILE when it has
# FILE open, else to "". Called directly (not in $(...)) so the descriptor
# found stays cached in HFD; after that it costs one readlink per call.
HFD=
POS=
hasher_pos() {
	local k v
	POS=
	if [ -z "$HFD" ] || [ "$(readlink "/proc/$DPID/fd/$HFD" 2>/dev/null)" != "$1" ]; then
		HFD=$(find "/proc/$DPID/fd" -lname "$1" -printf '%f\n' -quit 2>/dev/null || true)
		[ -n "$HFD" ] || return 0
	fi
	while read -r k v; do
		if [ "$k" = "pos:" ]; then
			POS=$v
			return 0
		fi
	done <"/proc/$DPID/fdinfo/$HFD" 2>/dev/null || true
}
asset_of() {
	psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		 WHERE t.code = 'r1' AND a.extra->>'relative_path' = '$1'"
}

# attempt KIND N: drop one file and try to change it mid-hash. Sets HIT=1/0.
attempt() {
	local kind=$1 n=$2 name="$1-$2.bin" path pos deadline
	path=$DROP/$name
	cp "$T/base" "$T/src/$name"
	printf '%s attempt %d %s' "$kind" "$n" "$RANDOM$RANDOM" >>"$T/src/$name" # distinct content
	HIT=0
	HFD=
	mv "$T/src/$name" "$path"
	deadline=$(($(now_ms) + 60000))
	next_sql=0
	while :; do
		hasher_pos "$path"
		pos=$POS
		if [ -n "$pos" ] && [ "$pos" -gt "$MARGIN" ]; then
			if [ "$pos" -lt $((SIZE - MARGIN)) ]; then
				kill -STOP "$DPID"
				# Still open and still mid-file while the daemon is frozen?
				hasher_pos "$path"
				pos=$POS
				if [ -n "$pos" ] && [ "$pos" -gt "$MARGIN" ] && [ "$pos" -lt $((SIZE - MARGIN)) ]; then
					if [ "$kind" = append ]; then
						head -c 1048576 /dev/urandom >>"$path"
					else
						# Same size, new bytes at the start (already hashed).
						dd if=/dev/urandom of="$path" bs=1M count=1 conv=notrunc status=none
					fi
					HIT=1
					log "$name: changed at hasher offset $pos ($kind)"
				fi
				kill -CONT "$DPID"
			fi
			break
		fi
		now=$(now_ms)
		[ "$now" -lt "$deadline" ] || fail "$name: the daemon never opened it for hashing within 60 s"
		# Hashed and catalogued before we saw it? psql is slow: only while the
		# file is not open, and at most every 250 ms.
		if [ -z "$pos" ] && [ "$now" -ge "$next_sql" ]; then
			[ "$(asset_of "$name")" = 0 ] || break
			next_sql=$((now + 250))
		fi
	done
	[ $HIT = 1 ] || log "$name: missed the hashing window (ingested unchanged)"
	wait_sql 120 "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		      WHERE t.code = 'r1' AND a.extra->>'relative_path' = '$name'" 1
	printf '%s\t%s\n' "$(sha256 "$path")" "$name" >>"$T/manifest"
}

: >"$T/manifest"
hits=0
for kind in append overwrite; do
	phase_begin "$kind while hashing"
	for n in 1 2 3 4; do
		attempt "$kind" "$n"
		if [ $HIT = 1 ]; then
			hits=$((hits + 1))
			break
		fi
	done
	phase_end
	[ "$HIT" = 1 ] || fail "could not change the file while it was hashed in 4 attempts ($kind)"
done

daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"
# Each change was seen by the hasher (not only by the settle timer).
seen=$(count_log "$T/daemon.log" 'changed while hashed')
[ "$seen" -ge "$hits" ] || fail "$hits files changed mid-hash but the daemon reported $seen"
check_invariant r1 "$T/manifest" "metadata" "$DROP"
# Each asset records the size of the final content too.
for f in "$DROP"/*.bin; do
	assert_eq "$(psql_q "SELECT file_size_bytes FROM assets WHERE extra->>'relative_path' = '${f##*/}'")" \
		"$(stat -c %s "$f")" "recorded size of ${f##*/}"
done
log "PASS"

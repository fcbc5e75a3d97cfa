#!/usr/bin/env bash
# ingest_quota (issue 4, "Done when"): storage_quota_bytes is enforced
# race-safely.
#  1. Two files of 600,000 bytes dropped together for a tenant whose quota is
#     1,000,000: exactly one asset; the other file stays in the drop folder
#     and is reported over quota once. After the quota is raised (database
#     and config) a SIGHUP catalogues the held file.
#  2. The race across two ingest nodes: two daemons, each watching its own drop
#     folder of the same five tenants (quota 1,000,000 each); each daemon gets
#     one 600,000-byte file per tenant, all dropped at the same moment: exactly
#     one asset per tenant, and the other file reported over quota.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require

QUOTA=1000000
FSIZE=600000
OVER='over the tenant.s storage quota'
Q1=$T/drop/q1
Q0=$T/drop/q0
LIB=$T/library
mkdir -p "$Q1" "$Q0" "$T/src1"
CFG=$T/mam.yaml
write_cfg() {
	{
		cfg_header 300
		cat <<EOF
tenants:
  - code: q1
    name: Quota one
    storage_quota_bytes: $1
    drop_folders:
      - path: $Q1
        after_ingest: move
        move_to: $LIB
        jobs: [metadata]
  - code: q0
    name: No quota
    drop_folders:
      - path: $Q0
        jobs: [metadata]
EOF
	} >"$CFG"
	cfg_finish "$CFG"
}
write_cfg $QUOTA
pg_start
ing_migrate "$CFG"

# ---- 1: one daemon, two files together, then a raised quota + SIGHUP --------
head -c $FSIZE /dev/urandom >"$T/src1/a.bin"
head -c $FSIZE /dev/urandom >"$T/src1/b.bin"
manifest "$T/src1" >"$T/man_q1"
daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
assert_eq "$(psql_q "SELECT storage_quota_bytes FROM tenants WHERE code = 'q1'")" $QUOTA "quota of q1 from the config"

phase_begin "two files over quota together"
mv "$T/src1/a.bin" "$T/src1/b.bin" "$Q1/"
wait_assets 60 q1 1
wait_log 60 "$T/daemon.log" "$OVER"
_one_left() { [ "$(find "$Q1" -type f | wc -l)" = 1 ]; }
wait_for 60 "the catalogued file moved, the held one left in the drop folder" _one_left
phase_end
# Let the daemon do more work (another tenant's file), then check the held
# file was reported once, not once per event or pass.
head -c 1000 /dev/urandom >"$Q0/sentinel.bin"
wait_assets 60 q0 1
assert_eq "$(count_log "$T/daemon.log" "$OVER")" 1 "over-quota reports"
held=$(find "$Q1" -type f)
held_sha=$(sha256 "$held")
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE checksum_sha256 = '$held_sha'")" 0 "assets of the held file"
assert_eq "$(psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		     WHERE t.code = 'q1' AND a.checksum_sha256 IN ($(cut -f1 "$T/man_q1" | sed "s/.*/'&'/" | paste -sd,))")" \
	1 "assets of the two files"
log "held: ${held#"$T"/}"

phase_begin "quota raised + SIGHUP"
write_cfg 10000000
psql_q "UPDATE tenants SET storage_quota_bytes = 10000000 WHERE code = 'q1'" >/dev/null
kill -HUP "$DPID"
wait_assets 60 q1 2
_none_left() { [ -z "$(find "$Q1" -type f)" ]; }
wait_for 60 "the held file moved after it was catalogued" _none_left
phase_end
daemon_term "$DPID"
check_invariant q1 "$T/man_q1" "metadata" "$LIB"
assert_eq "$(count_log "$T/daemon.log" "$OVER")" 1 "over-quota reports at the end"

# ---- 2: the race across two daemons --------------------------------------------
# Each round drops, at the same moment, one file per tenant into each daemon's
# folder of NT fresh tenants; whether the two daemons' batches really overlap
# in the database is up to timing, so there are several rounds.
NT=5
NR=6
CA=$T/race_a.yaml
CB=$T/race_b.yaml
race_cfg() { # FILE SIDE
	{
		cfg_header 300
		echo "tenants:"
		for ((r = 1; r <= NR; r++)); do
			for ((i = 1; i <= NT; i++)); do
				cat <<EOF
  - code: race${r}_$i
    name: Race $r $i
    storage_quota_bytes: $QUOTA
    drop_folders:
      - path: $T/race$2/r$r/t$i
        jobs: [metadata]
EOF
			done
		done
	} >"$1"
	cfg_finish "$1"
}
race_cfg "$CA" a
race_cfg "$CB" b
for side in a b; do
	for ((r = 1; r <= NR; r++)); do
		for ((i = 1; i <= NT; i++)); do
			mkdir -p "$T/race$side/r$r/t$i" "$T/racesrc$side/r$r/t$i"
			head -c $FSIZE /dev/urandom >"$T/racesrc$side/r$r/t$i/$side.bin"
		done
	done
done
: >"$T/race_a.log"
: >"$T/race_b.log"
daemon_run "$CA" "$T/race_a.log"
PA=$DPID
daemon_run "$CB" "$T/race_b.log"
PB=$DPID
wait_log 60 "$T/race_a.log" "database connected"
wait_log 60 "$T/race_b.log" "database connected"

n_over() { echo $(($(count_log "$T/race_a.log" "$OVER") + $(count_log "$T/race_b.log" "$OVER"))); }
n_race_assets() {
	psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id WHERE t.code LIKE 'race%'"
}
# Every file of the rounds so far decided: catalogued or reported over quota.
_race_decided() { [ $(($(n_over) + $(n_race_assets))) -ge "$1" ]; }
phase_begin "race: $NR rounds of $NT tenants, one file per tenant on each of two daemons"
for ((r = 1; r <= NR; r++)); do
	movers=()
	for ((i = 1; i <= NT; i++)); do
		mv "$T/racesrca/r$r/t$i/a.bin" "$T/racea/r$r/t$i/" &
		movers+=($!)
		mv "$T/racesrcb/r$r/t$i/b.bin" "$T/raceb/r$r/t$i/" &
		movers+=($!)
	done
	for p in "${movers[@]}"; do wait "$p"; done
	wait_for 60 "the $((2 * NT)) files of race round $r catalogued or held" _race_decided $((2 * NT * r))
done
phase_end
daemon_term "$PA"
daemon_term "$PB"
log "daemon a: $(summary "$T/race_a.log"); daemon b: $(summary "$T/race_b.log")"
bad=$(psql_q "SELECT t.code || ': ' || count(a.id) || ' assets, ' || coalesce(sum(a.file_size_bytes), 0) || ' bytes'
	      FROM tenants t LEFT JOIN assets a ON a.tenant_id = t.id AND a.parent_id IS NULL
	     WHERE t.code LIKE 'race%' GROUP BY t.code
	    HAVING count(a.id) <> 1 OR coalesce(sum(a.file_size_bytes), 0) > $QUOTA ORDER BY t.code")
[ -z "$bad" ] || fail "quota race lost: with two files of $FSIZE bytes and a quota of $QUOTA
each tenant should have exactly one asset:
$bad"
assert_eq "$(n_over)" $((NT * NR)) "over-quota reports across both daemons"
winners=
for ((r = 1; r <= NR; r++)); do
	wa=$(grep -c "race${r}_[0-9]* \"a.bin\": catalogued" "$T/race_a.log" || true)
	winners+="r$r:a$wa/b$((NT - wa)) "
done
log "race winners per round: $winners"
log "PASS"

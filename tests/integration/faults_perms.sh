#!/usr/bin/env bash
# faults_perms (issue 9 item 1, "unreadable file and directory"): the daemon
# runs as an unprivileged user (postgres; root reads anything) on a drop
# folder that user owns, with two things in it it cannot read:
#
# - a root-owned file of mode 0600: hashing it fails with EACCES, so it is
#   quarantined (issue 4 item 5) to <drop>/.quarantine with a
#   <name>.reason.json naming the cause; no asset is recorded for it, its
#   bytes are intact. Once present at start, once dropped while it runs.
# - root-owned directories of mode 0700 holding files (one there at start,
#   one moved in while it runs): the watcher can neither watch nor list
#   them. An error naming the directory and the errno is logged, the daemon
#   keeps running and the other files are ingested; after `chmod 755` and a
#   SIGHUP (which rescans) their files are ingested,
#   each exactly once.
#
# Ends with the invariant over every readable file, and the daemon alive.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require setpriv
[ "$(id -u)" = 0 ] || skip "needs root: the test makes root-owned files the daemon's user cannot read"
id postgres >/dev/null 2>&1 || skip "no postgres user to run the daemon as"

RUN_AS=postgres
DROP=$T/drop
mkdir -p "$DROP" "$T/src"
chown "$RUN_AS:" "$DROP"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 p1 "Permission test" "$DROP"
pg_start
ing_migrate "$CFG"

# The unprivileged daemon must reach its binary, its config and the socket.
for p in "$MAM_BIN" "$CFG" "$PGHOST"; do
	setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups test -r "$p" ||
		skip "$RUN_AS cannot read $p (the checkout or the temp dir is not reachable)"
done

# daemon_run_as CFG: like daemon_run, but as $RUN_AS. setpriv execs, so the
# pid is the daemon's own and signals reach it directly.
daemon_run_as() {
	setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups \
		"$MAM_BIN" run -c "$1" >>"$T/daemon.log" 2>&1 &
	DPID=$!
	_pids+=("$DPID")
}

# readable files, before and while the daemon runs (owned by root, mode 0644)
gen_files "$T/src/before" 4 1000 50000 ok-before-
gen_files "$T/src/live" 4 1000 50000 ok-live-
gen_files "$T/src/locked" 3 1000 50000 locked-
gen_files "$T/src/locked-live" 2 1000 50000 locked-live-
# secret files: readable by root only
head -c 30000 /dev/urandom >"$T/secret-before.bin"
head -c 30000 /dev/urandom >"$T/secret-live.bin"
SECRET_BEFORE_SHA=$(sha256 "$T/secret-before.bin")
SECRET_LIVE_SHA=$(sha256 "$T/secret-live.bin")

{
	manifest "$T/src/before"
	manifest "$T/src/live"
	manifest "$T/src/locked" | sed 's/\t/\tlocked\//'
	manifest "$T/src/locked-live" | sed 's/\t/\tlocked-live\//'
} >"$T/manifest"
manifest_distinct "$T/manifest"

mv "$T/src/before"/* "$DROP/"
install -m 0600 -o root -g root "$T/secret-before.bin" "$DROP/secret-before.bin"
mkdir -m 0700 "$DROP/locked"
mv "$T/src/locked"/* "$DROP/locked/"

phase_begin "start as $RUN_AS with an unreadable file and directory present"
daemon_run_as "$CFG"
wait_assets 60 p1 4
# The file it cannot read: quarantined with a reason.
Q=$DROP/.quarantine
wait_for 60 "secret-before.bin quarantined" test -f "$Q/secret-before.bin.reason.json"
phase_end
# The directory it cannot read: an error naming it and the errno. Checked
# once everything else has run (see the end), so that a missing message does
# not hide the rest.
LOCKED_MSG="^(warning|error) [a-z]+: .*\"$DROP/locked\".*Permission denied"
LOCKED_LIVE_MSG="^(warning|error) [a-z]+: .*\"$DROP/locked-live\".*Permission denied"

phase_begin "files dropped while it runs"
mv "$T/src/live"/* "$DROP/"
# An unreadable directory moved in while it runs (inotify, not the first scan).
chmod 0700 "$T/src/locked-live"
mv "$T/src/locked-live" "$DROP/locked-live"
install -m 0600 -o root -g root "$T/secret-live.bin" "$T/secret-live.tmp-x"
mv "$T/secret-live.tmp-x" "$DROP/secret-live.bin"
wait_assets 60 p1 8
wait_for 60 "secret-live.bin quarantined" test -f "$Q/secret-live.bin.reason.json"
phase_end
daemon_alive "$DPID" || fail "the daemon died"

for s in secret-before secret-live; do
	[ ! -e "$DROP/$s.bin" ] || fail "$s.bin is still in the drop folder after it was quarantined"
	[ -f "$Q/$s.bin" ] || fail "$s.bin is not in $Q"
	grep -q 'Permission denied' "$Q/$s.bin.reason.json" ||
		fail "$s.bin.reason.json does not name the cause: $(cat "$Q/$s.bin.reason.json")"
	grep -q "\"relative_path\":\"$s.bin\"" "$Q/$s.bin.reason.json" ||
		fail "$s.bin.reason.json does not name the file: $(cat "$Q/$s.bin.reason.json")"
done
assert_eq "$(sha256 "$Q/secret-before.bin")" "$SECRET_BEFORE_SHA" "content of the quarantined secret-before.bin"
assert_eq "$(sha256 "$Q/secret-live.bin")" "$SECRET_LIVE_SHA" "content of the quarantined secret-live.bin"
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE checksum_sha256 IN
	('$SECRET_BEFORE_SHA', '$SECRET_LIVE_SHA')")" 0 "assets of the unreadable files"
assert_eq "$(psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
	WHERE t.code = 'p1' AND a.extra->>'relative_path' LIKE 'locked%/%'")" 0 \
	"assets from the unreadable directories before they were opened up"

# The reload below rescans everything: the 8 files already catalogued are
# recognised (not catalogued again), the 5 in the directories are new.
phase_begin "chmod 755 the directories, SIGHUP"
chmod 755 "$DROP/locked" "$DROP/locked-live"
kill -HUP "$DPID"
wait_log 30 "$T/daemon.log" "configuration reloaded"
wait_assets 60 p1 13
phase_end
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"
check_invariant p1 "$T/manifest" "metadata" "$DROP"
# The rescan after the SIGHUP recognised the catalogued files from the
# ledger without hashing them again; the quarantined files were never hashed.
assert_eq "$(count_log "$T/daemon.log" 'catalogued as asset')" 13 "files catalogued"
assert_eq "$(summary_get "$T/daemon.log" hashed)" 13 "files hashed"
grep -qE -- "$LOCKED_MSG" "$T/daemon.log" ||
	fail "no error naming the unreadable directory \"$DROP/locked\" (there at start) and its errno was logged"
grep -qE -- "$LOCKED_LIVE_MSG" "$T/daemon.log" ||
	fail "no error naming the unreadable directory \"$DROP/locked-live\" (moved in live) and its errno was logged"
log "PASS"

#!/usr/bin/env bash
# faults_hashing (issue 9 item 1, "file replaced, appended or deleted during
# hashing"): a 256 MiB file is dropped (its pages evicted from the page cache
# first, so hashing reads the disk and takes a while); a small helper polls
# the daemon's open descriptors (/proc/PID/fdinfo, every ~0.2 ms) until the
# hasher is part-way through the file, freezes the daemon with SIGSTOP,
# checks it is still mid-file, changes the file and lets the daemon go on:
#
# - append: exactly one asset, with the checksum of the final content;
# - replace (another file renamed over it): exactly one asset, the new
#   content's; nothing recorded for the old content;
# - delete: no asset, nothing quarantined, no error or warning: a file
#   deleted while it was hashed is forgotten quietly (README, "A file deleted
#   while settling is forgotten quietly"; hasher.c reports it -ENOENT).
#
# ingest_rewrite.sh covers an append and an overwrite in place with a slower
# poller; this test adds replace and delete, and each kind must be hit (the
# race is retried up to 4 times). Ends with the invariant and the daemon alive.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require python3
# The system interpreter: a version manager's shim can take seconds to start.
PY=$(command -v /usr/bin/python3 || command -v python3)
[ -d /proc/self/fdinfo ] || skip "no /proc/PID/fdinfo: cannot see where the hasher is"

SIZE=$((256 * 1024 * 1024))
MARGIN=$((4 * 1024 * 1024))
DROP=$T/drop
mkdir -p "$DROP" "$T/src"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 h1 "Hashing faults" "$DROP"
pg_start
ing_migrate "$CFG"

# catch.py READY PID PATH SIZE MARGIN ACTION [ARG]: creates READY once it
# runs (the file is dropped only then), then waits (60 s at most) for PID to
# have PATH open, then until its offset is past MARGIN; if still short of
# SIZE - MARGIN, SIGSTOP it, wait until every thread is stopped, re-check the
# offset and do ACTION: append (1 MiB of random bytes), replace (rename ARG
# over PATH), delete (unlink). SIGCONT in every case. Prints "hit OFFSET",
# "missed OFFSET" or "done" (the file was never seen open mid-file: it was
# hashed before we looked), exit 2 on timeout.
cat >"$T/catch.py" <<'PY'
import os, signal, sys, time
ready, pid, path, size, margin, action = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
arg = sys.argv[7] if len(sys.argv) > 7 else None
fddir = "/proc/%d/fd" % pid

def find_fd():
    for fd in os.listdir(fddir):
        try:
            if os.readlink(os.path.join(fddir, fd)) == path:
                return fd
        except OSError:
            pass
    return None

def pos_of(fd):
    try:
        with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
            for line in f:
                if line.startswith("pos:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None

def all_stopped():
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if st not in ("T", "t"):
            return False
    return True

deadline = time.monotonic() + 60
fd, seen = None, False
open(ready, "w").close()
while time.monotonic() < deadline:
    if fd is None or pos_of(fd) is None:
        fd = find_fd()
        if fd is None:
            if seen:
                print("done")
                sys.exit(0)
            time.sleep(0.0002)
            continue
    seen = True
    p = pos_of(fd)
    if p is None or p <= margin:
        continue
    if p >= size - margin:
        print("missed %d" % p)
        sys.exit(0)
    os.kill(pid, signal.SIGSTOP)
    try:
        while not all_stopped():
            time.sleep(0.0005)
        p = pos_of(fd)
        if p is None or not (margin < p < size - margin):
            print("missed %s" % p)
            sys.exit(0)
        if action == "append":
            with open(path, "ab") as f:
                f.write(os.urandom(1 << 20))
        elif action == "replace":
            os.rename(arg, path)
        elif action == "delete":
            os.unlink(path)
        print("hit %d" % p)
    finally:
        os.kill(pid, signal.SIGCONT)
    sys.exit(0)
print("timeout")
sys.exit(2)
PY

# evict FILE: write it out and drop its pages, so the hasher reads the disk.
evict() {
	"$PY" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$1"
}

phase_begin "generate a 256 MiB file"
head -c "$SIZE" /dev/urandom >"$T/base"
phase_end

daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
Q=$DROP/.quarantine
: >"$T/manifest"
: >"$T/gone"

asset_of() {
	psql_q "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
		 WHERE t.code = 'h1' AND a.extra->>'relative_path' = '$1'"
}

# attempt KIND N: one file, one try at changing it mid-hash. Sets HIT=1/0.
attempt() {
	local kind=$1 n=$2 name="$1-$2.bin" path out
	path=$DROP/$name
	cp "$T/base" "$T/src/$name"
	printf '%s attempt %d %s' "$kind" "$n" "$RANDOM$RANDOM" >>"$T/src/$name" # distinct content
	printf '%s\t%s\n' "$(sha256 "$T/src/$name")" "$name" >>"$T/gone"
	evict "$T/src/$name"
	if [ "$kind" = replace ]; then
		printf 'replacement %s %s\n' "$n" "$RANDOM$RANDOM" >"$T/src/repl-$n"
		head -c 100000 /dev/urandom >>"$T/src/repl-$n"
	fi
	HIT=0
	rm -f "$T/ready"
	"$PY" "$T/catch.py" "$T/ready" "$DPID" "$path" "$SIZE" "$MARGIN" "$kind" "$T/src/repl-$n" \
		>"$T/catch.out" &
	cpid=$!
	wait_for 30 "the catcher to start" test -e "$T/ready"
	mv "$T/src/$name" "$path"
	wait "$cpid" || true
	out=$(cat "$T/catch.out")
	if [ "$out" = timeout ]; then
		# Never seen open: hashed between two looks? Then it is catalogued.
		[ "$(asset_of "$name")" = 1 ] ||
			fail "$name: the daemon never opened it for hashing within 60 s"
		out="missed (never seen open)"
	fi
	case $out in
	hit*)
		HIT=1
		log "$name: $kind at hasher offset ${out#hit }"
		;;
	*) log "$name: missed the hashing window ($out); ingested unchanged" ;;
	esac
	if [ "$kind" = delete ] && [ $HIT = 1 ]; then
		# Nothing to wait for in the catalogue: wait for the daemon's verdict.
		wait_log 60 "$T/daemon.log" "h1 \"$name\": vanished"
	else
		wait_sql 120 "SELECT count(*) FROM assets a JOIN tenants t ON t.id = a.tenant_id
			      WHERE t.code = 'h1' AND a.extra->>'relative_path' = '$name'" 1
		printf '%s\t%s\n' "$(sha256 "$path")" "$name" >>"$T/manifest"
	fi
}

for kind in append replace delete; do
	phase_begin "$kind while hashing"
	for n in 1 2 3 4; do
		attempt "$kind" "$n"
		[ $HIT = 1 ] && break
	done
	phase_end
	[ $HIT = 1 ] || fail "could not $kind the file while it was hashed in 4 attempts"
done

# A small file after all that: the daemon is not stuck.
printf 'still alive %s\n' "$RANDOM$RANDOM" >"$T/src/last.bin"
printf '%s\t%s\n' "$(sha256 "$T/src/last.bin")" last.bin >>"$T/manifest"
mv "$T/src/last.bin" "$DROP/"
wait_sql 60 "SELECT count(*) FROM assets WHERE extra->>'relative_path' = 'last.bin'" 1
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"

check_invariant h1 "$T/manifest" "metadata" "$DROP"
# The content a file had before it was changed or deleted was never recorded
# (the missed attempts were ingested unchanged and are in the manifest).
while IFS=$'\t' read -r sha name; do
	grep -q "^$sha" "$T/manifest" && continue
	assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE checksum_sha256 = '$sha'")" 0 \
		"assets with the content $name had before it was changed or deleted"
done <"$T/gone"
[ -z "$(find "$Q" -type f 2>/dev/null)" ] || fail "something was quarantined: $(ls "$Q")"
if grep -E '^(error|warning) ' "$T/daemon.log" | grep -q 'delete-'; then
	grep -E '^(error|warning) ' "$T/daemon.log" | grep 'delete-' >&2
	fail "an error or warning was logged for the deleted file"
fi
assert_eq "$(psql_q "SELECT count(*) FROM ingest_ledger WHERE relpath LIKE 'delete-%'
	AND relpath NOT IN (SELECT extra->>'relative_path' FROM assets)")" 0 "ledger rows of deleted files"
# The hasher itself noticed each change (not only the settle timer).
[ "$(count_log "$T/daemon.log" '(changed|was replaced) while (it was )?hashed')" -ge 2 ] ||
	fail "the daemon did not report the append and the replace as changes during hashing"
log "PASS"

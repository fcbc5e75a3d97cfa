#!/usr/bin/env bash
# faults_watch_limit (issue 9 item 1, "watch limit reached"): the daemon's
# drop folder has a few directories, the daemon holds their inotify watches,
# and then the number of watches it may hold is lowered to just above that.
# 50 new nested directories with files arrive (one tree moved in whole, the
# rest created in place): adding their watches fails with ENOSPC. Expected
# (watch_scan.c): the daemon logs that fs.inotify.max_user_watches was
# reached and falls back to polling that folder (poll_interval_ms), and every
# file, in old and new directories, is still ingested exactly once. Files
# dropped after the fallback are ingested too.
#
# The limit is lowered for this daemon alone: it runs in its own user
# namespace (unshare -U), and the kernel (5.11+) charges inotify watches to
# every user namespace up the chain, each with its own limit,
# /proc/sys/user/max_inotify_watches (fs.inotify.max_user_watches is the
# initial namespace's). Lowering the global sysctl instead would make every
# other process's new watches fail meanwhile, including concurrently running
# tests; this way the test needs no RUN_SERIAL. Skipped with a message when
# user namespaces (or their inotify limit) are not available here.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require unshare nsenter
[ -r /proc/sys/user/max_inotify_watches ] ||
	skip "no per-user-namespace inotify limit (/proc/sys/user/max_inotify_watches, Linux 5.11+)"
unshare -U --map-root-user sh -c 'echo 100 >/proc/sys/user/max_inotify_watches' 2>"$T/unshare.err" ||
	skip "cannot set the inotify limit of a new user namespace: $(cat "$T/unshare.err")"

DROP=$T/drop
mkdir -p "$DROP"/{a,b,c}/sub "$T/stage"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 w1 "Watch limit" "$DROP" "mode: events" "poll_interval_ms: 500"
pg_start
ing_migrate "$CFG"
# watches_of PID: inotify watches held by PID.
watches_of() { cat "/proc/$1"/fdinfo/* 2>/dev/null | grep -c '^inotify wd:' || true; }
# set_limit PID N: the watch limit of PID's user namespace.
set_limit() { nsenter -U -t "$1" sh -c "echo $2 >/proc/sys/user/max_inotify_watches"; }

# Files present at start, in the first directories.
for d in "" a b c a/sub b/sub c/sub; do gen_files "$T/src0/$d" 2 1000 20000 "s-${d//\//-}-"; done
(cd "$T/src0" && tar cf - .) | (cd "$DROP" && tar xf -)

# unshare execs the daemon: DPID is the daemon itself, root in its own user
# namespace (mapped to root, so it reads and writes what root does here).
unshare -U --map-root-user "$MAM_BIN" run -c "$CFG" >>"$T/daemon.log" 2>&1 &
DPID=$!
_pids+=("$DPID")
wait_assets 60 w1 14
USED=$(watches_of "$DPID")
[ "$USED" -ge 7 ] || fail "the daemon holds $USED inotify watches for 7 directories"
LIMIT=$((USED + 2))
log "the daemon holds $USED watches; limiting its user namespace to $LIMIT"
set_limit "$DPID" "$LIMIT" || fail "could not set the watch limit of the daemon's user namespace"

phase_begin "50 new nested directories with files"
# One tree of 10 nested directories moved in whole...
p=$T/stage/tree
for i in $(seq -w 1 10); do
	p=$p/t$i
	mkdir -p "$p"
	head -c $((1000 + RANDOM)) /dev/urandom >"$p/x$i-1.bin"
	head -c $((1000 + RANDOM)) /dev/urandom >"$p/x$i-2.bin"
done
mv "$T/stage/tree" "$DROP/tree"
# ...and 4 chains of 10 created in place, a directory at a time.
for b in 1 2 3 4; do
	p=$DROP/n$b
	for i in $(seq -w 1 10); do
		p=$p/d$i
		mkdir -p "$p"
		head -c $((1000 + RANDOM)) /dev/urandom >"$p/y$b-$i-1.bin"
		head -c $((1000 + RANDOM)) /dev/urandom >"$p/y$b-$i-2.bin"
	done
done
wait_log 60 "$T/daemon.log" 'max_user_watches reached'
phase_end
grep -E 'max_user_watches reached' "$T/daemon.log" | head -2 >&2

phase_begin "files after the fallback"
p=$(find "$DROP/n4" -type d | sort | tail -1)
head -c 5000 /dev/urandom >"$p/after-1.bin"
mkdir -p "$DROP/late/deeper"
head -c 5000 /dev/urandom >"$DROP/late/deeper/after-2.bin"
head -c 5000 /dev/urandom >"$DROP/after-3.bin"
# 14 at start + 20 + 80 + 3
wait_assets 90 w1 117
phase_end

(cd "$DROP" && find . -type f -not -path './.quarantine/*' -printf '%P\n') | LC_ALL=C sort |
	(cd "$DROP" && xargs -r -d '\n' openssl dgst -sha256 -r) |
	sed -e 's/^\([0-9a-f]\{64\}\) \*/\1\t/' >"$T/manifest"
assert_eq "$(wc -l <"$T/manifest")" 117 "files in the drop folder"
manifest_distinct "$T/manifest"
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"
check_invariant w1 "$T/manifest" "metadata" "$DROP"
log "PASS"

#!/bin/bash
# Watching (issue 3): a burst of 10,000 files while the kernel's inotify queue
# is limited to 1,024 events, so it overflows for sure. The daemon must log
# the overflow, rescan, and still report every file exactly once. Also nested
# directories created and filled at once (mkdir -p a/b/c and files in every
# level): files written before the new directory's watch existed are found
# by the scan that follows the watch.
. "$MAM_SRC/tests/lib/common.sh"

SYSCTL=/proc/sys/fs/inotify/max_queued_events
N=10000
D=$T/drop
mkdir -p "$D"
printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: 300\n  reconcile_interval_s: 0\n' \
	>"$T/cfg.yaml"
printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n      - path: %s\n' \
	"$D" >>"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

count() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | wc -l; }
reported() { [ "$(count "$1")" -ge 1 ]; }
n_finished() { awk -F'\t' '$1 == "finished"' "$T/out" | wc -l; }
at_least() { [ "$(n_finished)" -ge "$1" ]; }

old=$(cat $SYSCTL 2>/dev/null) || skip "cannot read $SYSCTL"
if ! echo 1024 2>/dev/null >$SYSCTL; then
	skip "cannot set fs.inotify.max_queued_events (not root, or /proc/sys read-only)"
fi
# The limit is read when an inotify instance is created: restore it as soon as
# the daemon has its own, so nothing else on the machine runs with it.
restore() { echo "$old" >$SYSCTL 2>/dev/null || true; }
# set +e: under set -e a failing (exit $rc) would end the trap before _cleanup.
trap 'rc=$?; restore; set +e; (exit $rc); _cleanup' EXIT

echo s >"$D/start"
"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" &
pid=$!
_pids+=($pid)
wait_for 30 "start reported" reported start
restore

log "burst of $N files in 20 directories"
# The directories exist and are watched first (a file in each is reported),
# so the files' events go to the kernel queue. The daemon is stopped during
# the burst so the 1,024-event queue overflows for sure (a fast reader could
# otherwise keep up with a shell loop): only a rescan can find the files.
for d in $(seq 20); do mkdir "$D/d$d" && echo w >"$D/d$d/w"; done
for d in $(seq 20); do wait_for 30 "d$d/w reported" reported "d$d/w"; done
kill -STOP $pid
for i in $(seq $N); do echo "file $i" >"$D/d$((i % 20 + 1))/f$i"; done
kill -CONT $pid
wait_for 120 "all $N files reported" at_least $((N + 21))
grep -q "inotify event queue overflowed" "$T/daemon.log" || fail "overflow not logged"
echo s >"$D/end"
wait_for 30 "end reported" reported end
dups=$(awk -F'\t' '$1 == "finished" { print $3 }' "$T/out" | sort | uniq -d | head)
[ -z "$dups" ] || fail "reported more than once: $dups"
assert_eq "$(n_finished)" $((N + 22)) "finished lines"
for i in 1 777 5000 $N; do
	assert_eq "$(count "d$((i % 20 + 1))/f$i")" 1 "reports of f$i"
done

log "nested directories created and filled in a burst"
before=$(n_finished)
mkdir -p "$D/a/b/c/d" && echo 1 >"$D/a/x1" && echo 2 >"$D/a/b/x2" && echo 3 >"$D/a/b/c/x3" &&
	echo 4 >"$D/a/b/c/d/x4"
mkdir -p "$D/p/q" && mv "$D/a/b/c/d" "$D/p/q/moved" # a directory moved in with its file
wait_for 30 "nested files reported" at_least $((before + 4))
echo s >"$D/end2"
wait_for 30 "end2 reported" reported end2
for f in a/x1 a/b/x2 a/b/c/x3 p/q/moved/x4; do
	assert_eq "$(count $f)" 1 "reports of $f"
done
assert_eq "$(n_finished)" $((before + 5)) "finished lines after the nested burst"
log "ok"

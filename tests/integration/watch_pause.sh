#!/bin/bash
# Watching (issue 3): a drop folder that disappears is paused and reported
# once, and resumed when it is back, without reporting its files again and
# without losing the files that arrived meanwhile. Two ways to disappear: the
# folder renamed away and back, and (where this test may mount) a share
# unmounted and mounted again (a bind mount). Also a ready marker in events
# mode: a file is reported only once its "{name}.done" marker exists, and the
# marker itself is never reported.
. "$MAM_SRC/tests/lib/common.sh"

P=$T/plain
S=$T/share
M=$T/mnt
K=$T/marked
mkdir -p "$P" "$S" "$M" "$K"
{
	printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: 300\n  reconcile_interval_s: 0\n'
	printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n'
	printf '      - path: %s\n      - path: %s\n' "$P" "$M"
	printf '      - path: %s\n        ready_marker: "{name}.done"\n' "$K"
} >"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

# count DIR NAME: "finished" lines for NAME in the folder DIR (by its tenant
# line order we cannot tell folders apart, so names are unique per test).
count() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | wc -l; }
reported() { [ "$(count "$1")" -ge 1 ]; }
logged() { [ "$(grep -c -F -- "$1" "$T/daemon.log")" -ge "${2:-1}" ]; }

mounted=0
if mount --bind "$S" "$M" 2>/dev/null; then
	mounted=1
	_cleanup_mount() {
		local rc=$?
		umount "$M" 2>/dev/null || true
		set +e # or a failing (exit $rc) would end the trap before _cleanup
		(exit $rc)
		_cleanup
	}
	trap _cleanup_mount EXIT
else
	log "cannot bind-mount here: the unmount part is skipped"
fi
echo a >"$P/a.mov"
echo s1 >"$M/s1.mov"
"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" &
_pids+=($!)
wait_for 30 "a.mov reported" reported a.mov
wait_for 30 "s1.mov reported" reported s1.mov

log "folder renamed away and back"
mv "$P" "$P.away"
wait_for 30 "pause logged" logged "\"$P\" of tenant t1 is unavailable (moved away)"
echo c >"$P.away/c.mov" # arrives while the folder is away
mv "$P.away" "$P"
wait_for 30 "c.mov reported after the folder came back" reported c.mov
logged "\"$P\" of tenant t1 resumed" || fail "resume not logged"
assert_eq "$(grep -c -F "\"$P\" of tenant t1 is unavailable" "$T/daemon.log")" 1 "pause reports"

if [ $mounted = 1 ]; then
	log "share unmounted and mounted again"
	umount "$M"
	wait_for 30 "unmount logged" logged "\"$M\" of tenant t1 is unavailable (unmounted)"
	echo s2 >"$S/s2.mov" # written on the server side meanwhile
	mount --bind "$S" "$M"
	wait_for 30 "s2.mov reported after the share came back" reported s2.mov
	logged "\"$M\" of tenant t1 resumed" || fail "resume of the share not logged"
fi

log "ready marker"
echo k >"$K/k.mov"
echo z >"$P/z.mov"
wait_for 30 "z.mov reported" reported z.mov
# z.mov was dropped after k.mov with the same settle_ms: k.mov is due too
assert_eq "$(count k.mov)" 0 "reports of k.mov before its marker"
: >"$K/k.mov.done"
wait_for 30 "k.mov reported after its marker" reported k.mov

echo end >"$P/end.mov"
wait_for 30 "end.mov reported" reported end.mov
for f in a.mov c.mov s1.mov k.mov; do assert_eq "$(count $f)" 1 "reports of $f"; done
[ $mounted = 0 ] || assert_eq "$(count s2.mov)" 1 "reports of s2.mov"
assert_eq "$(count k.mov.done)" 0 "reports of the ready marker"
log "ok"

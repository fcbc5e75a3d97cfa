#!/usr/bin/env bash
# Watching (issue 3, item 3): the periodic reconcile scan finds a file that
# no inotify event announced. An overlayfs drop folder makes such a file for
# real: a write into the lower layer shows up in the merged directory, but
# the kernel sends no event on the merged directory for it, the same way a
# remote writer on a share forced to `mode: events` goes unseen. The folder
# is in events mode (auto picks events for overlayfs, a local filesystem),
# so only the reconcile scan (reconcile_interval_s: 3, jittered +-10%) can
# report the file. A file written through the merged directory is reported
# by its events, well before any reconcile.
. "$MAM_SRC/tests/lib/common.sh"

[ "$(id -u)" = 0 ] || skip "mounting an overlayfs needs root"
O=$T/ov
mkdir -p "$O/lower" "$O/upper" "$O/work" "$O/merged"
mount -t overlay overlay -o "lowerdir=$O/lower,upperdir=$O/upper,workdir=$O/work" "$O/merged" 2>"$T/mount.err" ||
	skip "cannot mount an overlayfs here: $(cat "$T/mount.err")"
# set +e: under set -e a failing (exit $rc) would end the trap before _cleanup.
trap 'rc=$?; umount -l "$O/merged" 2>/dev/null || true; set +e; (exit $rc); _cleanup' EXIT

cat >"$T/cfg.yaml" <<EOF
database:
  conninfo: ""
ingest:
  settle_ms: 200
  reconcile_interval_s: 3
tenants:
  - code: t1
    name: Test
    drop_folders:
      - path: $O/merged
        mode: events
EOF
chmod 644 "$T/cfg.yaml"

reported() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | grep -q .; }
n_reconciles() { grep -c 'periodic reconcile scan' "$T/daemon.log" || true; }

"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" &
pid=$!
_pids+=("$pid")
echo via-merged >"$O/merged/start.txt"
wait_for 30 "start.txt reported by its events" reported start.txt
[ "$(n_reconciles)" = 0 ] || log "NOTE: a reconcile ran before start.txt was reported (slow machine)"

# Written beside the overlay: no event reaches the merged directory's watch.
r0=$(n_reconciles)
echo via-lower >"$O/lower/hidden.txt"
[ -f "$O/merged/hidden.txt" ] || fail "the lower layer's file is not visible in the merged directory"
wait_for 60 "hidden.txt reported" reported hidden.txt
r1=$(n_reconciles)
[ "$r1" -gt "$r0" ] || fail "hidden.txt was reported without a reconcile scan: the test cannot tell events from reconcile"
grep -q 'inotify' "$T/daemon.log" && grep -q 'overflow' "$T/daemon.log" && fail "an overflow rescan, not the reconcile, found it"

# The reconcile repeats, and a file it already reported is not reported again.
_more() { [ "$(n_reconciles)" -ge $((r1 + 2)) ]; }
wait_for 60 "two more reconcile scans" _more
assert_eq "$(awk -F'\t' '$1 == "finished" && $3 == "hidden.txt"' "$T/out" | wc -l)" 1 "reports of hidden.txt"
assert_eq "$(awk -F'\t' '$1 == "finished" && $3 == "start.txt"' "$T/out" | wc -l)" 1 "reports of start.txt"
kill -0 "$pid" || fail "daemon died"
log "PASS"

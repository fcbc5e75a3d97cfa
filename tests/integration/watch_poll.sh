#!/bin/bash
# Watching (issue 3): a folder forced to poll mode (`mode: poll`, as network
# filesystems get automatically) is watched by directory scans only: no
# inotify watch is placed on it, files are reported exactly once when they
# stopped changing, a slow writer is not reported before it ends, a file
# deleted before it settled is never reported, and a file changed after it
# was reported is reported again.
. "$MAM_SRC/tests/lib/common.sh"

D=$T/drop
SRC=$T/src
mkdir -p "$D/sub" "$SRC"
{
	printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: 500\n  reconcile_interval_s: 0\n'
	printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n'
	printf '      - path: %s\n        mode: poll\n        poll_interval_ms: 150\n' "$D"
} >"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

count() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | wc -l; }
sizes() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n { print $4 }' "$T/out" | tr '\n' ' '; }
reported() { [ "$(count "$1")" -ge "${2:-1}" ]; }
n_sentinel=0
sentinel() {
	n_sentinel=$((n_sentinel + 1))
	echo s >"$D/sentinel$n_sentinel"
	wait_for 30 "sentinel$n_sentinel reported" reported "sentinel$n_sentinel"
}

echo before >"$D/before.mov"
head -c 20000000 /dev/urandom >"$SRC/big.bin"
"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" &
pid=$!
_pids+=($pid)
wait_for 30 "before.mov reported" reported before.mov
grep -q "poll mode" "$T/daemon.log" || fail "folder not in poll mode"
watches=$(cat /proc/$pid/fdinfo/* 2>/dev/null | grep -c '^inotify wd:' || true)
assert_eq "$watches" 0 "inotify watches on a polled folder"

log "cp, mv and a file in a subdirectory"
cp "$SRC/big.bin" "$D/big.bin"
echo moved >"$SRC/m.mov" && mv "$SRC/m.mov" "$D/m.mov"
echo deep >"$D/sub/deep.mov"
wait_for 30 "big.bin reported" reported big.bin
wait_for 30 "m.mov reported" reported m.mov
wait_for 30 "sub/deep.mov reported" reported sub/deep.mov

log "slow writer: 30 chunks, one every 100 ms"
(for i in $(seq 30); do head -c 4096 /dev/urandom >>"$D/slow.bin"; sleep 0.1; done) &
writer=$!
while kill -0 $writer 2>/dev/null; do
	[ "$(count slow.bin)" = 0 ] || fail "slow.bin reported while still being written"
	sleep 0.05
done
wait $writer
wait_for 30 "slow.bin reported" reported slow.bin

log "deleted before settling; changed after reported"
echo short >"$D/short.mov"
sleep 0.2 # seen by a scan or not: it must not be reported either way
rm "$D/short.mov"
echo v1 >"$D/v.mov"
wait_for 30 "v.mov reported" reported v.mov
echo v2-longer >"$D/v.mov"
wait_for 30 "v.mov reported again" reported v.mov 2
sentinel
sentinel
for f in before.mov big.bin m.mov sub/deep.mov slow.bin; do
	assert_eq "$(count $f)" 1 "reports of $f"
done
assert_eq "$(sizes big.bin)" "20000000 " "size of big.bin"
assert_eq "$(sizes slow.bin)" "$((30 * 4096)) " "size of slow.bin"
assert_eq "$(count short.mov)" 0 "reports of a file deleted before it settled"
assert_eq "$(sizes v.mov)" "3 10 " "sizes of v.mov"
log "ok"

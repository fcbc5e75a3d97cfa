#!/bin/bash
# Watching (issue 3): real writers into a drop folder, with the real daemon in
# `run --no-db` mode (one "finished" line per finished file on stdout). Each
# file must be reported exactly once, with its final size, and never while
# it is still being written: cp of a large file, rsync (temp name + rename)
# and rsync --inplace, mv into place, a slow appender, a writer holding the
# file open through pauses of 3x settle_ms, a file deleted while settling
# (never reported), a file changed after it was reported (reported again,
# also when its writer holds it open for a while), and a file a writer held
# open since before the daemon started (no open history: lease probe).
. "$MAM_SRC/tests/lib/common.sh"

SETTLE=400
D=$T/drop
SRC=$T/src
mkdir -p "$D" "$SRC"
printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: %s\n  reconcile_interval_s: 0\n' \
	"$SETTLE" >"$T/cfg.yaml"
printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n      - path: %s\n' \
	"$D" >>"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

# count NAME: how many "finished" lines name NAME; sizes NAME: their sizes.
count() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | wc -l; }
sizes() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n { print $4 }' "$T/out" | tr '\n' ' '; }
reported() { [ "$(count "$1")" -ge "${2:-1}" ]; }
# sentinel: drop a file and wait for it. A duplicate report of an earlier
# file would have needed less time than this one takes to settle.
n_sentinel=0
sentinel() {
	n_sentinel=$((n_sentinel + 1))
	echo s >"$D/sentinel$n_sentinel"
	wait_for 30 "sentinel$n_sentinel reported" reported "sentinel$n_sentinel"
}
once() { # NAME SIZE
	assert_eq "$(count "$1")" 1 "reports of $1"
	assert_eq "$(sizes "$1")" "$2 " "reported size of $1"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# never_during MS NAME: NAME is not reported for MS milliseconds.
never_during() { # MS NAME [REPORTS_ALLOWED]
	local deadline=$(($(now_ms) + $1))
	while [ "$(now_ms)" -lt $deadline ]; do
		[ "$(count "$2")" -le "${3:-0}" ] || fail "$2 reported while its writer still had it open"
		sleep 0.05
	done
}

# The big source is made before the daemon starts: cp then streams 300 MB.
dd if=/dev/urandom of="$SRC/big.bin" bs=1M count=300 status=none
head -c 5000000 /dev/urandom >"$SRC/rs.bin"
head -c 3000000 /dev/urandom >"$SRC/rsi.bin"
head -c 2000000 /dev/urandom >"$SRC/mv.bin"

# A writer already holds pre.bin open when the daemon starts: the first scan
# finds it without open history, so only the read-lease probe can tell.
exec 4>"$D/pre.bin"
printf 'pre' >&4
"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" 4>&- &
_pids+=($!)
sentinel

log "writer holding a file open since before the start"
never_during $((3 * SETTLE)) pre.bin
exec 4>&-
wait_for 30 "pre.bin reported after close" reported pre.bin
once pre.bin 3

log "cp of a 300 MB file"
cp "$SRC/big.bin" "$D/big.bin"
wait_for 60 "big.bin reported" reported big.bin
sentinel
once big.bin 314572800

log "rsync (temp file + rename) and rsync --inplace"
rsync -a "$SRC/rs.bin" "$D/"
rsync -a --inplace "$SRC/rsi.bin" "$D/"
wait_for 30 "rs.bin reported" reported rs.bin
wait_for 30 "rsi.bin reported" reported rsi.bin
sentinel
once rs.bin 5000000
once rsi.bin 3000000
if grep -P '\t\.rs\.bin\.' "$T/out"; then fail "rsync temp file reported"; fi

log "mv into place from outside the folder"
mv "$SRC/mv.bin" "$D/mv.bin"
wait_for 30 "mv.bin reported" reported mv.bin
sentinel
once mv.bin 2000000

log "slow writer: 40 chunks of 64 KiB, one every 100 ms"
(for i in $(seq 40); do head -c 65536 /dev/urandom >>"$D/slow.bin"; sleep 0.1; done) &
writer=$!
while kill -0 $writer 2>/dev/null; do
	[ "$(count slow.bin)" = 0 ] || fail "slow.bin reported while still being written"
	sleep 0.05
done
wait $writer
wait_for 30 "slow.bin reported" reported slow.bin
sentinel
once slow.bin $((40 * 65536))

log "writer holding the file open, pausing 3x settle_ms twice"
exec 3>"$D/held.bin"
printf 'part1' >&3
never_during $((3 * SETTLE)) held.bin
printf 'part2' >&3
never_during $((3 * SETTLE)) held.bin
exec 3>&-
wait_for 30 "held.bin reported after close" reported held.bin
sentinel
once held.bin 10

log "files deleted while settling"
exec 3>"$D/gone.bin"
printf 'doomed' >&3
rm "$D/gone.bin"
exec 3>&-
echo x >"$D/gone2.bin"
rm "$D/gone2.bin"
sentinel
sentinel
assert_eq "$(count gone.bin)" 0 "reports of a file deleted while settling"
assert_eq "$(count gone2.bin)" 0 "reports of a file deleted while settling"

log "file changed after it was reported: reported again"
echo first >"$D/again.txt"
wait_for 30 "again.txt reported" reported again.txt
echo second >>"$D/again.txt"
wait_for 30 "again.txt reported a second time" reported again.txt 2
sentinel
assert_eq "$(count again.txt)" 2 "reports of again.txt"
assert_eq "$(sizes again.txt)" "6 13 " "sizes of again.txt"

log "reported file reopened by a writer that pauses: reported again after close"
exec 3>>"$D/again.txt"
printf 'third' >&3
never_during $((3 * SETTLE)) again.txt 2
exec 3>&-
wait_for 30 "again.txt reported a third time" reported again.txt 3
sentinel
assert_eq "$(sizes again.txt)" "6 13 18 " "sizes of again.txt"

# Reading reported files (as the hasher does) must not report them again.
cat "$D/big.bin" "$D/again.txt" >/dev/null
sentinel
assert_eq "$(count big.bin)" 1 "reports of big.bin after it was read"
assert_eq "$(count again.txt)" 3 "reports of again.txt after it was read"
log "ok"

#!/bin/bash
# Watching (issue 3): what is and is not a file to ingest. Every default junk
# and temp name (and files inside macOS metadata directories, and the
# quarantine directory) is never reported while a real file beside them is;
# a symlink to a file (or directory) outside the folder is never reported or
# followed; a FIFO and a device node are skipped without blocking the daemon
# (a file dropped after them is still reported); names with non-UTF-8 bytes,
# control characters and 255 bytes are reported once, escaped. The same
# holds for files present before the daemon starts (found by the first scan)
# and for files dropped while it runs (found through inotify).
. "$MAM_SRC/tests/lib/common.sh"

D=$T/drop
OUT=$T/outside
mkdir -p "$D" "$OUT/dir"
printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: 300\n  reconcile_interval_s: 0\n' \
	>"$T/cfg.yaml"
printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n      - path: %s\n' \
	"$D" >>"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

count() { awk -F'\t' -v n="$1" '$1 == "finished" && $3 == n' "$T/out" | wc -l; }
reported() { [ "$(count "$1")" -ge 1 ]; }

junk=('._clip.mov' '.DS_Store' 'Thumbs.db' 'desktop.ini' '~$report.docx' '.clip.mov.Ab3dE9'
	'movie.part' 'x.filepart' 'file.crdownload' 'scratch.tmp' '.syncthing.clip.mov.tmp')
junkdirs=('.AppleDouble' '.Trashes' '.Spotlight-V100' '.fseventsd' '.TemporaryItems')
long=$(printf 'L%.0s' $(seq 251)).mov

# drop_all DIR: the whole zoo in DIR (below the drop folder).
drop_all() {
	local dir=$1 j
	mkdir -p "$dir"
	for j in "${junk[@]}"; do echo junk >"$dir/$j"; done
	for j in "${junkdirs[@]}"; do mkdir -p "$dir/$j" && echo junk >"$dir/$j/inside.mov"; done
	# the folder's quarantine directory (default <folder>/.quarantine) is never watched
	mkdir -p "$D/.quarantine" && echo q >"$D/.quarantine/${dir##*/}.mov"
	echo secret >"$OUT/secret.txt"
	echo secret >"$OUT/dir/secret2.txt"
	ln -s "$OUT/secret.txt" "$dir/link.mov"
	ln -s "$OUT/dir" "$dir/linkdir"
	mkfifo "$dir/fifo.mov"
	mknod "$dir/null.mov" c 1 3 2>/dev/null || true
	echo real >"$dir/real.mov"
	echo bytes >"$dir/"$'\xff\xfe''clip.mov'
	echo ctl >"$dir/"$'ctl\x01\ttab.mov'
	echo long >"$dir/$long"
}
# What must be reported from DIR ("" or "sub/"), as ingest prints it (escaped).
expected() {
	printf '%s\n' "$1real.mov" "$1\\xff\\xfeclip.mov" "$1ctl\\x01\\x09tab.mov" "$1$long"
}

log "files present before the daemon starts"
drop_all "$D"
"$MAM_BIN" run --no-db -c "$T/cfg.yaml" >"$T/out" 2>"$T/daemon.log" &
_pids+=($!)
wait_for 30 "real.mov reported" reported real.mov
echo after >"$D/after-fifo.mov"
wait_for 30 "a file dropped after the FIFO reported" reported after-fifo.mov

log "the same names dropped while the daemon runs"
drop_all "$D/sub"
wait_for 30 "sub/real.mov reported" reported sub/real.mov
echo after >"$D/sub/after-fifo.mov"
wait_for 30 "sub/after-fifo.mov reported" reported sub/after-fifo.mov

got=$(awk -F'\t' '$1 == "finished" { print $3 }' "$T/out" | sort)
want=$({ expected ""; expected "sub/"; echo after-fifo.mov; echo sub/after-fifo.mov; } | sort)
if [ "$got" != "$want" ]; then
	diff <(echo "$want") <(echo "$got") >&2 || true
	fail "reported names differ from the expected set (< expected, > reported)"
fi
# The escaped long name is the 255-byte name itself (no escapes, not cut).
assert_eq "$(count "$long")" 1 "reports of the 255-byte name"
assert_eq "${#long}" 255 "length of the long name"
# Logs escape names too: no raw control byte from a file name in the log.
if grep -q $'\x01' "$T/daemon.log"; then fail "raw control byte in the daemon log"; fi
log "ok"

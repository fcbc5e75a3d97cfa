#!/bin/bash
# Watching (issue 3): `mam-ingest scan --dry-run` lists, in one pass and
# without a database, what is finished and what is still settling and why:
# a file modified less than settle_ms ago, a file a writer still holds open
# (read-lease probe), a file waiting for its ready marker. Junk names, ready
# markers and symlinks are not listed; the command exits 0.
. "$MAM_SRC/tests/lib/common.sh"

A=$T/a # settle_ms 200, ready markers off
B=$T/b # settle_ms one day: everything in it is "modified N ms ago"
C=$T/c # ready_marker "{name}.done"
mkdir -p "$A/sub" "$B" "$C"
{
	printf 'database:\n  conninfo: ""\ningest:\n  settle_ms: 200\n'
	printf 'tenants:\n  - code: t1\n    name: Test\n    drop_folders:\n'
	printf '      - path: %s\n' "$A"
	printf '      - path: %s\n        settle_ms: 86400000\n' "$B"
	printf '      - path: %s\n        ready_marker: "{name}.done"\n' "$C"
} >"$T/cfg.yaml"
chmod 644 "$T/cfg.yaml"

scan() { "$MAM_BIN" scan --dry-run -c "$T/cfg.yaml" >"$T/out" 2>"$T/err"; }
# line KIND NAME: the 4th field of the KIND line for NAME ("" when absent).
line() { awk -F'\t' -v k="$1" -v n="$2" '$1 == k && $3 == n { print $4 }' "$T/out"; }
# The files are written a few ms apart (held.mov and ready.mov after
# old.mov): a scan can land between them reaching settle_ms, so wait until
# every one of them is past it (ready.mov, written last of those that
# settle, then finished; held.mov no longer "modified N ms ago").
old_enough() {
	scan && [ -n "$(line finished old.mov)" ] && [ -n "$(line finished sub/old2.mov)" ] &&
		[ -n "$(line finished ready.mov)" ] && [[ "$(line settling held.mov)" != modified* ]]
}

echo old >"$A/old.mov"
echo old >"$A/sub/old2.mov"
echo junk >"$A/.DS_Store"
ln -s "$A/old.mov" "$A/link.mov"
echo held >"$A/held.mov"
exec 3>>"$A/held.mov" # a writer keeps it open
echo new >"$B/new.mov"
echo v >"$C/waiting.mov"
echo v >"$C/ready.mov"
echo >"$C/ready.mov.done"

# Files become finished once settle_ms has passed since they changed.
wait_for 30 "old.mov, sub/old2.mov and ready.mov finished, held.mov past settle_ms" old_enough
exec 3>&-
cat "$T/out" >&2

assert_eq "$(line finished old.mov)" 4 "old.mov size"
assert_eq "$(line finished sub/old2.mov)" 4 "sub/old2.mov size"
assert_eq "$(line settling held.mov)" "open for writing" "held.mov reason"
case "$(line settling new.mov)" in
"modified "*" ms ago") ;;
*) fail "new.mov: expected 'modified N ms ago', got [$(line settling new.mov)]" ;;
esac
assert_eq "$(line settling waiting.mov)" "waiting for ready marker waiting.mov.done" \
	"waiting.mov reason"
assert_eq "$(line finished ready.mov)" 2 "ready.mov size"
for n in .DS_Store link.mov ready.mov.done; do
	[ -z "$(awk -F'\t' -v n=$n '$3 == n' "$T/out")" ] || fail "$n listed"
done
assert_eq "$(wc -l <"$T/out")" 6 "lines listed"

# Once the writer closed it, the same file is finished.
scan
assert_eq "$(line finished held.mov)" 5 "held.mov after its writer closed"
log "ok"

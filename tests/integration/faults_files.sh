#!/usr/bin/env bash
# faults_files (issue 9 item 1): hostile names and things that are not
# regular files, with the real daemon and PostgreSQL (watch_names.sh checks
# the watcher alone, without a database).
#
# Names: NFC "été.mov" and NFD "e\u0301te\u0301.mov" side by side (two
# files, two assets); a tab, a newline, both quotes, a backslash; "..." and
# "..evil.mov"; a 255-byte ASCII name and a 255-byte UTF-8 name; a
# non-UTF-8 name (bad\xff.bin) next to a UTF-8 name whose text is exactly the
# other's escaped display form (bad\\xff.bin, with a literal backslash). Each
# is exactly one asset with the right checksum and one metadata job; the
# folder moves files (after_ingest: move), so the location must point at the
# moved file, found again from the catalogue by its exact bytes: the text
# path for UTF-8 names; for the non-UTF-8 name the ledger's final_path_bytes
# and the percent-encoded url, and the asset's extra.relative_path_hex.
#
# Not files: a symlink to a file outside the folder and a symlink to a
# directory outside it are never ingested and never followed (their targets
# stay where they are, byte for byte, and no asset has their checksum); a
# FIFO, a unix socket and a character device node (1,3) are never ingested
# and do not block the daemon (files dropped after them are ingested).
#
# A mount below the drop folder (a bind mount at <drop>/mnt): the hasher opens
# files with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS and without
# RESOLVE_NO_XDEV, and the watcher walks into mount points, so files below a
# mount are ingested like any other, exactly once (the move crosses a mount:
# copy, verify, unlink). Only root can mount: it is the administrator's
# choice, not something a share user can do. Skipped with a message when the
# mount is not possible here.
#
# Everything is done twice: present when the daemon starts (found by the
# first scan), and dropped into a new subdirectory while it runs (inotify).
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require od mkfifo iconv python3
PY=$(command -v /usr/bin/python3 || command -v python3)

DROP=$T/drop
LIB=$T/library
OUT=$T/outside
mkdir -p "$DROP" "$LIB" "$OUT/dir"
CFG=$T/mam.yaml
cfg_tenant "$CFG" 300 n1 "Names test" "$DROP" "after_ingest: move" "move_to: $LIB"
pg_start
ing_migrate "$CFG"

MNT=
_faults_cleanup() {
	local rc=$?
	[ -z "$MNT" ] || umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	# Under set -e, (exit $rc) would end this trap; it only hands rc to _cleanup.
	set +e
	(exit $rc)
	_cleanup
}
trap _faults_cleanup EXIT

hex_of() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
# from_hex HEX: REPLY = the bytes (no subshell, so trailing newlines stay).
from_hex() {
	local h=$1 e='' i
	for ((i = 0; i < ${#h}; i += 2)); do e+="\\x${h:i:2}"; done
	printf -v REPLY '%b' "$e"
}
# url_path URL: REPLY = the path bytes of a file:// url (percent-decoded; the
# url holds no backslash and no '%' but the escapes).
url_path() {
	local u=${1#file://}
	u=${u//\\/\\\\}
	printf -v REPLY '%b' "${u//%/\\x}"
}
# sha256 of a file by content: openssl escapes names with a newline in its output.
sha_of() { openssl dgst -sha256 -r <"$1" | cut -c1-64; }
is_utf8() { printf '%s' "$1" | iconv -f UTF-8 -t UTF-8 >/dev/null 2>&1; }

long_ascii=$(printf 'L%.0s' $(seq 251)).mov
long_utf8=$(printf '\xc3\xa9%.0s' $(seq 125))x.mov
names=(
	$'\xc3\xa9t\xc3\xa9.mov'        # NFC été.mov
	$'e\xcc\x81te\xcc\x81.mov'      # NFD
	$'tab\there.mov'
	$'new\nline.mov'
	'quo"te.mov'
	"it's.mov"
	'back\slash.mov'
	'...'
	'..evil.mov'
	"$long_ascii"
	"$long_utf8"
	$'bad\xff.bin'
	'bad\xff.bin'                   # the display form of the one above, as a real name
	'plain.mov'
)
[ ${#long_ascii} = 255 ] || fail "long ASCII name is ${#long_ascii} bytes"
[ "$(printf '%s' "$long_utf8" | wc -c)" = 255 ] || fail "long UTF-8 name is not 255 bytes"

# EXPECT: one line "relpath-hex<TAB>sha256" per file that must be ingested.
: >"$T/expect"
# drop_names DIR REL: every name in DIR (REL is its path below the drop folder,
# "" or "sub/"), each with distinct content, written elsewhere and moved in.
drop_names() {
	local dir=$1 rel=$2 n i=0 tmp
	mkdir -p "$T/stage"
	for n in "${names[@]}"; do
		i=$((i + 1))
		tmp=$T/stage/f$i
		{
			printf 'file %s of %s\n' "$i" "$rel"
			head -c $((1000 + RANDOM % 20000)) /dev/urandom
		} >"$tmp"
		printf '%s\t%s\n' "$(hex_of "$rel$n")" "$(sha256 "$tmp")" >>"$T/expect"
		mv "$tmp" "$dir/$n"
	done
}

# drop_others DIR TAG: symlinks out of the folder, FIFO, socket, device node.
drop_others() {
	local dir=$1 tag=$2
	printf 'outside file %s %s\n' "$tag" "$RANDOM$RANDOM" >"$OUT/secret-$tag.mov"
	mkdir -p "$OUT/dir-$tag"
	printf 'outside dir file %s %s\n' "$tag" "$RANDOM$RANDOM" >"$OUT/dir-$tag/inside.mov"
	ln -s "$OUT/secret-$tag.mov" "$dir/link-$tag.mov"
	ln -s "$OUT/dir-$tag" "$dir/linkdir-$tag"
	ln -s "../../outside/secret-$tag.mov" "$dir/rellink-$tag.mov"
	mkfifo "$dir/fifo-$tag.mov"
	"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
		"$dir/sock-$tag.mov" || fail "could not create a unix socket"
	[ -S "$dir/sock-$tag.mov" ] || fail "sock-$tag.mov is not a socket"
	if mknod "$dir/null-$tag.mov" c 1 3 2>/dev/null; then
		HAVE_DEV=1
	else
		log "mknod c 1 3 not permitted here: no device node in this run"
	fi
}
HAVE_DEV=0

# A mount below the drop folder, with files in it.
mkdir -p "$T/mounted/deeper" "$DROP/mnt"
gen_files "$T/mounted" 3 1000 20000 m-
gen_files "$T/mounted/deeper" 2 1000 20000 md-
if mount --bind "$T/mounted" "$DROP/mnt" 2>"$T/mount.err"; then
	MNT=$DROP/mnt
	(cd "$T/mounted" && find . -type f -printf '%P\n') | while read -r f; do
		printf '%s\t%s\n' "$(hex_of "mnt/$f")" "$(sha256 "$T/mounted/$f")" >>"$T/expect"
	done
else
	log "SKIP (part): mount --bind failed ($(cat "$T/mount.err")): no mount below the drop folder in this run"
	rmdir "$DROP/mnt"
fi

phase_begin "everything present when the daemon starts"
drop_names "$DROP" ""
drop_others "$DROP" before
printf 'after the special files\n%s\n' "$RANDOM$RANDOM" >"$T/stage/after"
printf '%s\t%s\n' "$(hex_of after-before.mov)" "$(sha256 "$T/stage/after")" >>"$T/expect"
mv "$T/stage/after" "$DROP/after-before.mov"
n_before=$(wc -l <"$T/expect")
daemon_run "$CFG"
wait_assets 90 n1 "$n_before"
phase_end

phase_begin "the same dropped into a new subdirectory while it runs"
mkdir "$DROP/live"
drop_others "$DROP/live" live
drop_names "$DROP/live" "live/"
# Only after the FIFO, socket and device node: proves they block nothing.
printf 'after the special files, live\n%s\n' "$RANDOM$RANDOM" >"$T/stage/after"
printf '%s\t%s\n' "$(hex_of live/after-live.mov)" "$(sha256 "$T/stage/after")" >>"$T/expect"
mv "$T/stage/after" "$DROP/live/after-live.mov"
n_all=$(wc -l <"$T/expect")
wait_assets 90 n1 "$n_all"
phase_end
_moved_out() { [ -z "$(find "$DROP" -type f)" ]; }
wait_for 60 "every regular file moved out of the drop folder" _moved_out
daemon_alive "$DPID" || fail "the daemon died"
daemon_term "$DPID"
log "summary: $(summary "$T/daemon.log")"

# ---- the catalogue, file by file, by exact bytes -------------------------------
# One row per asset of the tenant; '|' cannot occur in any field (hex, sha,
# percent-encoded url, numbers).
psql -X -q -v ON_ERROR_STOP=1 -At -F '|' -c "
SELECT a.checksum_sha256,
       coalesce(a.extra->>'relative_path_hex', encode(convert_to(a.extra->>'relative_path', 'UTF8'), 'hex')),
       a.extra->>'relative_path_hex' IS NOT NULL,
       (SELECT count(*) FROM asset_storage_locations x WHERE x.asset_id = a.id AND x.purpose = 'original'),
       encode(convert_to(l.path, 'UTF8'), 'hex'),
       coalesce(encode(g.final_path_bytes, 'hex'), ''),
       l.url, l.checksum_sha256, l.is_primary, l.file_size_bytes,
       (SELECT count(*) FROM ingest_ledger y WHERE y.asset_id = a.id),
       coalesce((SELECT string_agg(j.job_type || ':' || j.status, ',') FROM ingest_jobs j
		  WHERE j.asset_id = a.id), ''),
       a.primary_storage_path = l.path
  FROM assets a JOIN tenants t ON t.id = a.tenant_id
  LEFT JOIN asset_storage_locations l ON l.asset_id = a.id AND l.purpose = 'original'
  LEFT JOIN ingest_ledger g ON g.asset_id = a.id
 WHERE t.code = 'n1' AND a.parent_id IS NULL" >"$T/assets" || fail "catalogue query failed"

assert_eq "$(wc -l <"$T/assets")" "$n_all" "assets of tenant n1 (files that must be ingested)"
errors=0
bad() {
	log "$*"
	errors=$((errors + 1))
}
declare -A seen_url rows_of row_of
while IFS= read -r line; do
	rows_of[${line%%|*}]=$((${rows_of[${line%%|*}]:-0} + 1))
	row_of[${line%%|*}]=$line
done <"$T/assets"
while IFS=$'\t' read -r relhex sha; do
	from_hex "$relhex"
	rel=$REPLY
	printf -v shown '%q' "$rel"
	if [ "${rows_of[$sha]:-0}" != 1 ]; then
		bad "$shown: ${rows_of[$sha]:-0} assets with its checksum $sha (want 1)"
		continue
	fi
	IFS='|' read -r _ arel is_hex nloc lpath_hex fbytes url lsha prim lsize nled jobs same_path \
		<<<"${row_of[$sha]}"
	[ "$arel" = "$relhex" ] || bad "$shown: recorded relative path (hex) $arel, want $relhex"
	[ "$nloc" = 1 ] || bad "$shown: $nloc original storage locations"
	[ "$nled" = 1 ] || bad "$shown: $nled ledger rows"
	[ "$lsha" = "$sha" ] || bad "$shown: location checksum $lsha"
	[ "$prim" = t ] || bad "$shown: location is_primary=$prim"
	[ "$same_path" = t ] || bad "$shown: primary_storage_path differs from the location path"
	[ "$jobs" = "metadata:pending" ] || bad "$shown: jobs [$jobs], want one pending metadata job"
	# Where is the file now, by exact bytes?
	if is_utf8 "$rel"; then
		[ "$is_hex" = f ] || bad "$shown: valid UTF-8 name stored with relative_path_hex"
		from_hex "$lpath_hex"
		path=$REPLY
		[ -z "$fbytes" ] || [ "$fbytes" = "$lpath_hex" ] ||
			bad "$shown: ledger final_path_bytes differ from the location path"
	else
		[ "$is_hex" = t ] || bad "$shown: non-UTF-8 name stored without relative_path_hex"
		[ -n "$fbytes" ] || bad "$shown: non-UTF-8 path without ledger final_path_bytes"
		from_hex "$fbytes"
		path=$REPLY
		# The text path is the escaped display form: printable, not the file.
		from_hex "$lpath_hex"
		[ "$REPLY" != "$path" ] || bad "$shown: text path equals raw bytes that are not UTF-8?"
		log "non-UTF-8 name: location path text is $(printf '%q' "$REPLY"), exact bytes in ingest_ledger.final_path_bytes"
	fi
	url_path "$url"
	[ "$REPLY" = "$path" ] || bad "$shown: url $url does not decode to the file's path $(printf '%q' "$path")"
	[ -n "${seen_url[$url]:-}" ] && bad "$shown: url $url also used by ${seen_url[$url]}"
	seen_url[$url]=$shown
	# The moved file's last component is the original name, byte for byte.
	[ "${path##*/}" = "${rel##*/}" ] || bad "$shown: moved file is named $(printf '%q' "${path##*/}")"
	case $path in "$LIB"/*) ;; *) bad "$shown: location $(printf '%q' "$path") not under $LIB" ;; esac
	if [ ! -f "$path" ] || [ -L "$path" ]; then
		bad "$shown: location $(printf '%q' "$path") is not an existing regular file"
	else
		[ "$(sha_of "$path")" = "$sha" ] || bad "$shown: file at the location has another checksum"
		[ "$(stat -c %s "$path")" = "$lsize" ] || bad "$shown: location size $lsize differs from the file's"
	fi
done <"$T/expect"
[ "$errors" = 0 ] || fail "$errors problems with names (above)"
log "every name: exactly one asset, exact bytes recoverable, file at its location"

# NFC and NFD are two different files and stayed two.
assert_eq "$(psql_q "SELECT count(DISTINCT a.id) FROM assets a
	WHERE a.extra->>'relative_path' IN (U&'\\00e9t\\00e9.mov', U&'e\\0301te\\0301.mov')")" 2 \
	"assets for NFC été.mov and NFD été.mov"

# ---- nothing outside was followed, nothing special was ingested ---------------
for tag in before live; do
	for f in "$OUT/secret-$tag.mov" "$OUT/dir-$tag/inside.mov"; do
		[ -f "$f" ] || fail "symlink target $f is gone: a symlink was followed"
		assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE checksum_sha256 = '$(sha256 "$f")'")" 0 \
			"assets with the checksum of symlink target $f"
	done
	d=$DROP
	[ $tag = live ] && d=$DROP/live
	for f in "link-$tag.mov" "linkdir-$tag" "rellink-$tag.mov"; do
		[ -L "$d/$f" ] || fail "symlink $d/$f was moved or removed"
	done
	[ -p "$d/fifo-$tag.mov" ] || fail "FIFO fifo-$tag.mov was moved or removed"
	[ -S "$d/sock-$tag.mov" ] || fail "socket sock-$tag.mov was moved or removed"
	[ $HAVE_DEV = 0 ] || [ -c "$d/null-$tag.mov" ] || fail "device node null-$tag.mov was moved or removed"
done
assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE extra->>'relative_path' ~ '(link|fifo|sock|null)-'
	OR checksum_sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'")" 0 \
	"assets for symlinks, FIFOs, sockets, device nodes or empty content"
if [ -n "$MNT" ]; then
	assert_eq "$(psql_q "SELECT count(*) FROM assets WHERE extra->>'relative_path' LIKE 'mnt/%'")" 5 \
		"assets from below the mount"
fi
# Logs escape names: one line per event, no raw control byte in any of them,
# the tab and newline names as \x09 and \x0a, the invalid byte as \xff.
if LC_ALL=C grep -qP '[\x00-\x08\x0b-\x1f\x7f]' "$T/daemon.log"; then
	fail "a raw control byte in the daemon log: $(LC_ALL=C grep -nP '[\x00-\x08\x0b-\x1f\x7f]' "$T/daemon.log" | head -2 | od -c | head -3)"
fi
grep -qF '"new\x0aline.mov": catalogued as asset' "$T/daemon.log" || fail "the newline name is not logged escaped"
grep -qF '"tab\x09here.mov": catalogued as asset' "$T/daemon.log" || fail "the tab name is not logged escaped"
grep -qF '"bad\xff.bin": catalogued as asset' "$T/daemon.log" || fail "the non-UTF-8 name is not logged escaped"
if grep -qE '^error ' "$T/daemon.log"; then
	grep -E '^error ' "$T/daemon.log" | head -5 >&2
	fail "the daemon logged errors"
fi
log "PASS"

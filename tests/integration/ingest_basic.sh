#!/usr/bin/env bash
# ingest_basic (issue 4): a handful of files dropped with real writers (cp into
# place, mv into place, a new subdirectory) into a running daemon become
# exactly one asset each, with the storage location, url, content type, status,
# jobs and extra a user expects; a later `scan` over the same, already
# catalogued files adds nothing and rehashes nothing.
. "${MAM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/common.sh"
. "$MAM_SRC/tests/integration/lib_ingest.sh"
ing_require stat

A=$T/drop/a # tenant b1: jobs metadata + thumbnail, priority 7
B=$T/drop/b # tenant b2: no jobs
mkdir -p "$A" "$B" "$T/src"
CFG=$T/mam.yaml
{
	cfg_header 300
	cat <<EOF
tenants:
  - code: b1
    name: Basic one
    drop_folders:
      - path: $A
        jobs: [metadata, thumbnail]
        priority: 7
  - code: b2
    name: Basic two
    drop_folders:
      - path: $B
        jobs: []
EOF
} >"$CFG"
cfg_finish "$CFG"

pg_start
ing_migrate "$CFG"

# The files, and their checksums, before anything is dropped.
head -c 100000 /dev/urandom >"$T/src/clip1.bin"
head -c 200000 /dev/urandom >"$T/src/moved.bin"
head -c 150000 /dev/urandom >"$T/src/take1.mov"      # random bytes: the extension decides
head -c 50000 /dev/urandom >"$T/src/my clip.bin"     # a space: percent-encoded in the url
head -c 70000 /dev/urandom >"$T/src/deep.bin"
for i in $(seq 1 200); do echo "line $i of some notes $RANDOM"; done >"$T/src/notes.txt"
HAVE_PNG=0
if command -v ffmpeg >/dev/null 2>&1 &&
	ffmpeg -nostdin -loglevel error -f lavfi -i "color=c=red:s=32x24" -frames:v 1 "$T/src/pic.png"; then
	HAVE_PNG=1
else
	log "ffmpeg could not make a PNG: the image/png content type is not checked"
fi
mkdir -p "$T/srcb"
head -c 30000 /dev/urandom >"$T/srcb/b-one.bin"
head -c 40000 /dev/urandom >"$T/srcb/b-two.bin"

# What folder a will hold, by relative path.
mkdir -p "$T/expect_a/sub/dir"
for f in clip1.bin moved.bin take1.mov "my clip.bin" notes.txt; do cp "$T/src/$f" "$T/expect_a/$f"; done
cp "$T/src/deep.bin" "$T/expect_a/sub/dir/deep.bin"
[ $HAVE_PNG = 1 ] && cp "$T/src/pic.png" "$T/expect_a/pic.png"
manifest "$T/expect_a" >"$T/man_a"
manifest "$T/srcb" >"$T/man_b"
manifest_distinct "$T/man_a"
NA=$(wc -l <"$T/man_a")
NB=$(wc -l <"$T/man_b")

# Folder b is filled before the daemon starts (found by its first scan), folder
# a while it runs (found through events).
cp "$T"/srcb/*.bin "$B/"
phase_begin "run: $NA files live + $NB at start"
daemon_run "$CFG"
wait_log 60 "$T/daemon.log" "database connected"
cp "$T/src/clip1.bin" "$A/"
mv "$T/src/moved.bin" "$A/"
cp "$T/src/take1.mov" "$T/src/my clip.bin" "$T/src/notes.txt" "$A/"
[ $HAVE_PNG = 1 ] && cp "$T/src/pic.png" "$A/"
mkdir -p "$A/sub/dir"
cp "$T/src/deep.bin" "$A/sub/dir/"
wait_assets 60 b1 "$NA"
wait_assets 60 b2 "$NB"
phase_end
daemon_term "$DPID"

assert_eq "$(summary "$T/daemon.log")" "hashed=$((NA + NB)) catalogued=$((NA + NB)) known=0 failed=0" \
	"summary of the first run"
assert_eq "$(count_log "$T/daemon.log" 'catalogued as asset [0-9a-f-]{36}')" "$((NA + NB))" \
	"\"catalogued as asset\" log lines"
check_invariant b1 "$T/man_a" "metadata thumbnail" "$A"
check_invariant b2 "$T/man_b" "" "$B"

# url: file:// and the path, percent-encoded outside RFC 3986's unreserved set.
urlenc() {
	local s=$1 i c out=
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[A-Za-z0-9/._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf 'file://%s' "$out"
}

# row REL: the catalogue's view of one file of folder a, '|' separated.
row() {
	psql_q "SELECT a.title, a.file_size_bytes, a.status, a.extra->>'relative_path',
		       a.extra->>'drop_folder', l.path, l.filename, l.url, l.file_size_bytes,
		       l.storage_type, l.storage_tier, (l.bucket IS NULL), (l.verified_at IS NOT NULL),
		       a.slug IS NOT NULL AND a.slug <> '', a.primary_storage_path = l.path
		  FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id
		  JOIN tenants t ON t.id = a.tenant_id
		 WHERE t.code = 'b1' AND l.purpose = 'original' AND a.extra->>'relative_path' = '$1'"
}
for rel in clip1.bin moved.bin take1.mov "my clip.bin" notes.txt sub/dir/deep.bin; do
	name=${rel##*/}
	size=$(stat -c %s "$A/$rel")
	want="$name|$size|processing|$rel|$A|$A/$rel|$name|$(urlenc "$A/$rel")|$size|local|hot|t|t|t|t"
	assert_eq "$(row "$rel")" "$want" "catalogue row of $rel"
	# Jobs: one per configured type, pending, on the file where it is, priority 7.
	assert_eq "$(psql_q "SELECT string_agg(j.job_type || ':' || j.status || ':' || j.priority || ':' ||
				(j.input_path = '$A/$rel'), ',' ORDER BY j.job_type)
			   FROM ingest_jobs j JOIN assets a ON a.id = j.asset_id
			  WHERE a.extra->>'relative_path' = '$rel'")" \
		"metadata:pending:7:true,thumbnail:pending:7:true" "jobs of $rel"
done

# Content type and asset type from the content (libmagic), the extension as
# the fallback for bytes libmagic cannot name.
ctype() {
	psql_q "SELECT a.asset_type || ' ' || l.content_type FROM assets a
		  JOIN asset_storage_locations l ON l.asset_id = a.id
		 WHERE a.extra->>'relative_path' = '$1'"
}
assert_eq "$(ctype notes.txt)" "document text/plain" "types of notes.txt"
assert_eq "$(ctype take1.mov)" "video application/octet-stream" "types of take1.mov"
assert_eq "$(ctype clip1.bin)" "document application/octet-stream" "types of clip1.bin"
[ $HAVE_PNG = 1 ] && assert_eq "$(ctype pic.png)" "image image/png" "types of pic.png"

# Without jobs the asset is available at once.
assert_eq "$(psql_q "SELECT string_agg(DISTINCT a.status, ',') || ' ' || count(j.id)
		      FROM assets a JOIN tenants t ON t.id = a.tenant_id
		      LEFT JOIN ingest_jobs j ON j.asset_id = a.id WHERE t.code = 'b2'")" \
	"available 0" "status and job count of tenant b2"

# A second pass over the same files: nothing new, nothing rehashed.
phase_begin "scan over $((NA + NB)) catalogued files"
: >"$T/scan.log"
"$MAM_BIN" scan -c "$CFG" >>"$T/scan.log" 2>&1 || { cat "$T/scan.log" >&2; fail "scan exited with $?"; }
phase_end
assert_eq "$(summary "$T/scan.log")" "hashed=0 catalogued=0 known=$((NA + NB)) failed=0" "summary of the scan"
assert_eq "$(psql_q "SELECT (SELECT count(*) FROM assets) || ' ' ||
		     (SELECT count(*) FROM asset_storage_locations) || ' ' || (SELECT count(*) FROM ingest_jobs)")" \
	"$((NA + NB)) $((NA + NB)) $((NA * 2))" "rows after the scan"
check_invariant b1 "$T/man_a" "metadata thumbnail" "$A"
check_invariant b2 "$T/man_b" "" "$B"
log "PASS"

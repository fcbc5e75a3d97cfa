#!/usr/bin/env bash
# The worker on real media made by ffmpeg here: an H.264/AAC stereo 48 kHz
# video, PNG stills of several sizes, a mono WAV, a corrupt file, a zero-byte
# file, a missing file. Asserts that the technical metadata equals what
# ffprobe reports, that thumbnails and proxies exist where their storage
# locations say (with that size and checksum) and that ffprobe reads them,
# that jobs which do not apply complete saying so, that bad input fails its
# jobs with ffprobe's reason without hurting the worker, that retries back off
# up to max_retries, and the assets' final status.
. "$MAM_SRC/tests/lib/common.sh"
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || skip "ffmpeg/ffprobe not installed"

pg_start
M=$T/media
mkdir -p "$M" "$T/deriv"
cat >"$T/cfg.yaml" <<EOF
database:
  conninfo: ""
worker:
  concurrency: 2
  derivatives_root: $T/deriv
  poll_ms: 200
  thumbnail_offset_s: 1.5
tenants: []
EOF
migrate "$T/cfg.yaml" >/dev/null

ffmpeg -nostdin -v error -f lavfi -i testsrc=size=320x240:rate=25 \
	-f lavfi -i sine=frequency=440:sample_rate=48000 -t 3 -c:v libx264 -preset ultrafast \
	-pix_fmt yuv420p -c:a aac -ac 2 -ar 48000 "$M/clip one.mp4"
ffmpeg -nostdin -v error -f lavfi -i testsrc=size=640x480 -frames:v 1 "$M/still.png"
ffmpeg -nostdin -v error -f lavfi -i testsrc=size=1280x720 -frames:v 1 "$M/hd.png"
ffmpeg -nostdin -v error -f lavfi -i testsrc=size=4096x2160 -frames:v 1 "$M/dci.png"
ffmpeg -nostdin -v error -f lavfi -i sine=frequency=220:sample_rate=44100 -t 2 -ac 1 "$M/mono.wav"
# An MP4 cut off before its moov atom (an interrupted copy). Not random bytes:
# about 1 in 100 random 64 KiB files is a valid "lrc" lyrics file to ffprobe.
head -c 16384 "$M/clip one.mp4" >"$M/corrupt.mp4"
: >"$M/empty.mp4"

TEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('acme', 'ACME') RETURNING id")
BROKEN=$(psql_q "INSERT INTO tenants (code, name) VALUES ('broken', 'Broken') RETURNING id")
# The broken tenant's derivatives directory is a file: writing there fails.
: >"$T/deriv/broken"

# add_asset TENANT TITLE TYPE PATH JOBS [MAX_RETRIES]: asset + original location + jobs.
add_asset() {
	psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, status, primary_storage_path)
		  VALUES ('$1', '$2', '$3', 'processing', '$4') RETURNING id),
		l AS (INSERT INTO asset_storage_locations (asset_id, tenant_id, storage_type, path, filename,
		  purpose, is_primary) SELECT id, '$1', 'local', '$4', '$2', 'original', true FROM a),
		j AS (INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, input_path, max_retries)
		  SELECT '$1', a.id, t, '$4', ${6:-3} FROM a, unnest(string_to_array('$5', ',')) t)
		SELECT id FROM a"
}
ALL=metadata,thumbnail,proxy
V=$(add_asset "$TEN" "clip one.mp4" video "$M/clip one.mp4" $ALL)
P=$(add_asset "$TEN" still.png image "$M/still.png" $ALL)
HD=$(add_asset "$TEN" hd.png image "$M/hd.png" metadata)
DCI=$(add_asset "$TEN" dci.png image "$M/dci.png" metadata)
A=$(add_asset "$TEN" mono.wav audio "$M/mono.wav" $ALL)
C=$(add_asset "$TEN" corrupt.mp4 video "$M/corrupt.mp4" metadata,proxy)
Z=$(add_asset "$TEN" empty.mp4 video "$M/empty.mp4" metadata,thumbnail)
GONE=$(add_asset "$TEN" gone.mp4 video "$M/gone.mp4" metadata)
B=$(add_asset "$BROKEN" b.png image "$M/still.png" thumbnail 2)
# A name that is not UTF-8: the catalogue has a display form, the ingest
# ledger the exact bytes (as the ingester records them).
ODD="$M/odd"$'\xff'".wav"
cp "$M/mono.wav" "$ODD"
U=$(add_asset "$TEN" 'odd\xff.wav' audio "$M/odd\\xff.wav" metadata)
psql_q "INSERT INTO ingest_ledger (key, tenant_id, folder, relpath, dev, ino, size, mtime_ns,
	asset_id, outcome, final_path, final_path_bytes)
	VALUES ('odd', '$TEN', '$M', 'odd\\xff.wav', 0, 0, 0, 0, '$U', 'ingested', '$M/odd\\xff.wav',
	decode('$(printf '%s' "$ODD" | od -An -tx1 | tr -d ' \n')', 'hex'))" >/dev/null

# The same while its after_ingest move keeps failing, because another file
# (a video) is at the destination: the file is still in the drop folder under
# its exact bytes (source_path_bytes, move pending), the location holds the
# display form (sql/008), and the worker must read the drop folder's file.
ODD2="$M/odd2"$'\xfe'".wav"
cp "$M/mono.wav" "$ODD2"
U2=$(add_asset "$TEN" 'odd2\xfe.wav' audio "$M/odd2\\xfe.wav" metadata)
hexof() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
psql_q "INSERT INTO ingest_ledger (key, tenant_id, folder, relpath, dev, ino, size, mtime_ns,
	asset_id, outcome, after_ingest, move_state, source_path, source_path_bytes, final_path,
	final_path_bytes)
	VALUES ('odd2', '$TEN', '$M', 'odd2\\xfe.wav', 0, 0, 0, 0, '$U2', 'ingested', 'move', 'pending',
	'$M/odd2\\xfe.wav', decode('$(hexof "$ODD2")', 'hex'), '$T/lib/odd2\\xfe.wav',
	decode('$(hexof "$T/lib/odd2"$'\xfe'".wav")', 'hex'))" >/dev/null
mkdir -p "$T/lib"
cp "$M/clip one.mp4" "$T/lib/odd2"$'\xfe'".wav"

MAM_WORKER_RETRY_BASE_MS=300 start_daemon worker -c "$T/cfg.yaml"
W=$DAEMON_PID
wait_sql 120 "SELECT count(*) FROM ingest_jobs WHERE status NOT IN ('completed', 'failed')" 0
kill -0 "$W" 2>/dev/null || fail "worker died"

q() { psql_q "$1"; }
# pr FILE SELECTOR ENTRY: one value as ffprobe prints it.
pr() { ffprobe -v error -select_streams "$2" -show_entries "$3" -of default=nw=1:nk=1 "$1" | head -1; }
ms() { awk -v d="$1" 'BEGIN { printf "%.0f", d * 1000 }'; }
md() { q "SELECT coalesce($2::text, '') FROM asset_technical_metadata WHERE asset_id = '$1'"; }

# --- metadata equals what ffprobe reports
F="$M/clip one.mp4"
assert_eq "$(md "$V" width)" "$(pr "$F" v:0 stream=width)" "video width"
assert_eq "$(md "$V" height)" "$(pr "$F" v:0 stream=height)" "video height"
assert_eq "$(md "$V" video_codec)" "$(pr "$F" v:0 stream=codec_name)" "video codec"
assert_eq "$(md "$V" video_codec_profile)" "$(pr "$F" v:0 stream=profile)" "video profile"
assert_eq "$(md "$V" video_bitrate_bps)" "$(pr "$F" v:0 stream=bit_rate)" "video bitrate"
fr=$(pr "$F" v:0 stream=avg_frame_rate)
assert_eq "$(md "$V" "frame_rate_num || '/' || frame_rate_den")" "$fr" "frame rate"
assert_eq "$(md "$V" frame_rate)" "$(awk -v f="$fr" 'BEGIN { split(f, a, "/"); printf "%.4f", a[1] / a[2] }')" "frame rate value"
assert_eq "$(md "$V" audio_codec)" "$(pr "$F" a:0 stream=codec_name)" "audio codec"
assert_eq "$(md "$V" audio_channels)" "$(pr "$F" a:0 stream=channels)" "audio channels"
assert_eq "$(md "$V" audio_channels)" 2 "stereo"
assert_eq "$(md "$V" audio_channel_layout)" "$(pr "$F" a:0 stream=channel_layout)" "channel layout"
assert_eq "$(md "$V" audio_sample_rate)" "$(pr "$F" a:0 stream=sample_rate)" "sample rate"
assert_eq "$(md "$V" audio_sample_rate)" 48000 "48 kHz"
assert_eq "$(md "$V" audio_bitrate_bps)" "$(pr "$F" a:0 stream=bit_rate)" "audio bitrate"
assert_eq "$(md "$V" container_format)" "$(pr "$F" v:0 format=format_name)" "container"
dur=$(ms "$(pr "$F" v:0 format=duration)")
assert_eq "$(md "$V" duration_ms)" "$dur" "duration_ms"
assert_eq "$(q "SELECT duration_ms FROM assets WHERE id = '$V'")" "$dur" "assets.duration_ms"
assert_eq "$(md "$V" bit_depth)" 8 "bit depth"
assert_eq "$(md "$V" aspect_ratio)" "4:3" "aspect ratio"
assert_eq "$(md "$V" resolution_category)" SD "resolution category"
assert_eq "$(md "$V" "ffprobe_raw->'format'->>'format_name'")" "$(pr "$F" v:0 format=format_name)" "ffprobe_raw"
assert_eq "$(md "$V" analyzer_version)" "$(ffprobe -version | awk 'NR == 1 { print $3 }')" "analyzer version"
assert_eq "$(md "$V" "analyzed_at IS NOT NULL")" true "analyzed_at"
if command -v mediainfo >/dev/null; then
	assert_eq "$(md "$V" "mediainfo_raw->'media'->'track'->0->>'Format'")" \
		"$(mediainfo --Inform='General;%Format%' "$F")" "mediainfo_raw"
else
	assert_eq "$(md "$V" "coalesce(mediainfo_raw::text, 'none')")" none "no mediainfo, no mediainfo_raw"
fi

assert_eq "$(md "$P" width)x$(md "$P" height)" 640x480 "png size"
assert_eq "$(md "$P" video_codec)" "$(pr "$M/still.png" v:0 stream=codec_name)" "png codec"
assert_eq "$(md "$P" "coalesce(frame_rate::text, 'none')")" none "still image has no frame rate"
assert_eq "$(md "$HD" resolution_category)" HD "1280x720"
assert_eq "$(md "$DCI" resolution_category)" 4K "4096x2160"

F="$M/mono.wav"
assert_eq "$(md "$A" audio_codec)" "$(pr "$F" a:0 stream=codec_name)" "wav codec"
assert_eq "$(md "$A" audio_channels)" 1 "mono"
assert_eq "$(md "$A" audio_sample_rate)" "$(pr "$F" a:0 stream=sample_rate)" "wav sample rate"
assert_eq "$(md "$A" audio_bit_depth)" "$(pr "$F" a:0 stream=bits_per_sample)" "wav bit depth"
assert_eq "$(md "$A" duration_ms)" "$(ms "$(pr "$F" a:0 format=duration)")" "wav duration"
assert_eq "$(md "$A" "coalesce(width::text, 'none')")" none "audio has no width"

assert_eq "$(md "$U" audio_channels)" 1 "metadata of a file with a non-UTF-8 name"
assert_eq "$(md "$U2" audio_channels)" 1 "metadata of a non-UTF-8 name whose move is pending"
assert_eq "$(md "$U2" "coalesce(width::text, 'none')")" none "... read from the drop folder, not the video at the destination"

# --- derivatives: where the location says, with its size and checksum, readable
# deriv PARENT KIND: path of the one derivative, after checking its rows and file.
deriv() {
	local n path
	n=$(q "SELECT count(*) FROM assets WHERE parent_id = '$1' AND derivative_type = '$2'")
	assert_eq "$n" 1 "$2 assets of $1"
	path=$(q "SELECT l.path FROM assets a JOIN asset_storage_locations l ON l.asset_id = a.id
		  WHERE a.parent_id = '$1' AND a.derivative_type = '$2' AND l.purpose = '$2'
		  AND l.is_primary AND a.status = 'available' AND a.tenant_id = l.tenant_id")
	[ -f "$path" ] || fail "$2 of $1: no file at [$path]"
	case "$path" in "$T/deriv/"*/"$(date -u +%Y/%m)/$1/"*) ;; *) fail "$2 path [$path] not under the derivatives layout" ;; esac
	assert_eq "$(q "SELECT l.checksum_sha256 FROM asset_storage_locations l JOIN assets a ON a.id = l.asset_id
		WHERE a.parent_id = '$1' AND a.derivative_type = '$2'")" "$(sha256 "$path")" "$2 checksum"
	assert_eq "$(q "SELECT file_size_bytes FROM assets WHERE parent_id = '$1' AND derivative_type = '$2'")" \
		"$(stat -c %s "$path")" "$2 size"
	echo "$path"
}
t=$(deriv "$V" thumbnail)
assert_eq "$(pr "$t" v:0 stream=codec_name)" mjpeg "video thumbnail is a JPEG"
assert_eq "$(q "SELECT asset_type FROM assets WHERE parent_id = '$V' AND derivative_type = 'thumbnail'")" image "thumbnail type"
p=$(deriv "$V" proxy)
assert_eq "$(pr "$p" v:0 stream=codec_name)" h264 "proxy video codec"
assert_eq "$(pr "$p" a:0 stream=codec_name)" aac "proxy audio codec"
assert_eq "$(pr "$p" v:0 stream=height)" 240 "proxy height (never upscaled)"
assert_eq "$(ms "$(pr "$p" v:0 format=duration)" | cut -c1)" 3 "proxy duration ~3 s"
assert_eq "$(q "SELECT progress FROM ingest_jobs WHERE asset_id = '$V' AND job_type = 'proxy'")" 100 "progress"
t=$(deriv "$P" thumbnail)
assert_eq "$(pr "$t" v:0 stream=codec_name)" mjpeg "image thumbnail is a JPEG"
[ "$(pr "$t" v:0 stream=width)" -le 480 ] || fail "image thumbnail not resized"
p=$(deriv "$A" proxy)
assert_eq "$(pr "$p" a:0 stream=codec_name)" aac "audio proxy codec"
assert_eq "$(ffprobe -v error -select_streams v -show_entries stream=index -of csv=p=0 "$p")" "" "audio proxy has no video"

# --- jobs that do not apply complete and say so
assert_eq "$(q "SELECT status || ' ' || (result->>'applies') FROM ingest_jobs WHERE asset_id = '$P' AND job_type = 'proxy'")" "completed false" "proxy of a still"
q "SELECT result->>'reason' FROM ingest_jobs WHERE asset_id = '$P' AND job_type = 'proxy'" | grep -q "still image" || fail "no reason for the skipped proxy"
assert_eq "$(q "SELECT status || ' ' || (result->>'applies') FROM ingest_jobs WHERE asset_id = '$A' AND job_type = 'thumbnail'")" "completed false" "thumbnail of audio"
assert_eq "$(q "SELECT count(*) FROM assets WHERE parent_id IN ('$P', '$A') AND derivative_type IN ('proxy', 'thumbnail')")" 2 "no derivative for skipped jobs"

# --- bad input: failed with ffprobe's reason, asset failed, no retry
for id in "$C" "$Z"; do
	assert_eq "$(q "SELECT count(*) FROM ingest_jobs WHERE asset_id = '$id' AND status <> 'failed'")" 0 "jobs of $id failed"
	assert_eq "$(q "SELECT count(*) FROM ingest_jobs WHERE asset_id = '$id' AND error_message LIKE '%Invalid data found when processing input%' AND retry_count = 0 AND attempts = 1")" \
		"$(q "SELECT count(*) FROM ingest_jobs WHERE asset_id = '$id'")" "ffprobe's reason for $id"
	assert_eq "$(q "SELECT status FROM assets WHERE id = '$id'")" failed "asset $id"
done
q "SELECT error_message FROM ingest_jobs WHERE asset_id = '$GONE'" | grep -q 'gone.mp4" is missing' || fail "missing input not reported"
assert_eq "$(q "SELECT status FROM assets WHERE id = '$GONE'")" failed "asset of a missing file"

# --- a failure worth retrying: backed off and retried up to max_retries (2)
assert_eq "$(q "SELECT status || ' ' || retry_count || ' ' || attempts FROM ingest_jobs WHERE asset_id = '$B'")" "failed 2 3" "retries"
q "SELECT error_message FROM ingest_jobs WHERE asset_id = '$B'" | grep -q "could not create directory.*Not a directory" || fail "retry error"
assert_eq "$(grep -c "will be retried" "$T/daemon.log")" 2 "retries logged"

# --- assets whose jobs all completed are available
for id in "$V" "$P" "$HD" "$DCI" "$A" "$U"; do
	assert_eq "$(q "SELECT status FROM assets WHERE id = '$id'")" available "asset $id"
done

# --- still alive and working: one more job after all that
V2=$(add_asset "$TEN" again.mp4 video "$M/clip one.mp4" metadata)
psql_q "NOTIFY mam_ingest_jobs"
wait_sql 30 "SELECT status FROM assets WHERE id = '$V2'" available
grep -Eq "AddressSanitizer|runtime error|Segmentation" "$T/daemon.log" && fail "sanitizer or crash report"

# --- SIGTERM with nothing running: a clean, quick exit
kill -TERM "$W"
wait_for 10 "worker exit" bash -c "! kill -0 $W"
wait "$W" && rc=0 || rc=$?
assert_eq "$rc" 0 "worker exit status"
log "ok"

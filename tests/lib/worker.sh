# Helpers for worker tests. Source after common.sh.

# ffprobe_stub DIR: DIR/ffprobe prints the JSON the real ffprobe gives for a
# tiny PNG ($T/s.png, made here), so jobs go the whole way (claim, spawn,
# parse, store, settle the asset) without a real ffprobe's 0.2-0.3 s of CPU
# per call (it loads every codec library). Put DIR first on the workers' PATH.
ffprobe_stub() {
	local dir=$1
	mkdir -p "$dir"
	ffmpeg -nostdin -v error -f lavfi -i testsrc=size=16x16 -frames:v 1 "$T/s.png"
	ffprobe -v error -print_format json -show_format -show_streams -show_program_version \
		-- "file:$T/s.png" >"$T/probe.json"
	grep -q "'" "$T/probe.json" && fail "probe output has a quote the stub cannot hold"
	# printf is a dash builtin: one exec per job, no cat.
	{
		echo '#!/bin/sh'
		printf "printf '%%s\\\\n' '%s'\n" "$(cat "$T/probe.json")"
	} >"$dir/ffprobe"
	chmod 755 "$dir/ffprobe"
	cmp -s <("$dir/ffprobe" -v error) "$T/probe.json" || fail "the ffprobe stub does not print the probe"
}

# queue_metadata_jobs TENANT_ID N INPUT: N assets with one pending metadata
# job each, in one transaction announced by one NOTIFY at its commit.
queue_metadata_jobs() {
	psql_q "WITH a AS (INSERT INTO assets (tenant_id, title, asset_type, status)
		  SELECT '$1', 'still ' || g, 'image', 'processing' FROM generate_series(1, $2) g
		  RETURNING id)
		INSERT INTO ingest_jobs (tenant_id, asset_id, job_type, input_path)
		SELECT '$1', id, 'metadata', '$3' FROM a;
		NOTIFY mam_ingest_jobs" >/dev/null
}

#!/bin/bash
# The real binary's command line: `check-config` accepts the shipped example
# as is and reports a broken file as FILE:LINE:COL with the key name and exit
# status 1 (an unknown key on line 8, a YAML syntax error, several errors at
# once, an unsafe file mode, a password), and a warning with its place and
# status 0; every subcommand has --help;
# --version prints the project version; the configuration file is taken from
# -c, else $MAM_INGEST_CONFIG, else /etc/mam-ingest/mam-ingest.yaml.
. "$MAM_SRC/tests/lib/common.sh"
unset MAM_INGEST_CONFIG

# run_cli OUTVAR ARGS...: run the binary, stdout+stderr in OUTVAR, status in $rc.
run_cli() {
	local __var=$1 __out
	shift
	rc=0
	__out=$("$MAM_BIN" "$@" 2>&1) || rc=$?
	printf -v "$__var" '%s' "$__out"
}
put() { cp "$1" "$2" && chmod 644 "$2"; }

# The shipped example passes, though none of its folders exist here.
put "$MAM_SRC/config/mam-ingest.yaml" "$T/shipped.yaml"
run_cli out check-config -c "$T/shipped.yaml"
assert_eq "$rc" 0 "check-config exit status on the shipped example"
assert_eq "$out" "configuration OK" "check-config output on the shipped example"

# An unknown key on line 8.
put "$MAM_SRC/tests/data/config/unknown-key-line8.yaml" "$T/line8.yaml"
run_cli out check-config -c "$T/line8.yaml"
assert_eq "$rc" 1 "check-config exit status with an unknown key"
assert_eq "$out" "$T/line8.yaml:8:9: key \"tenants[0].drop_folders[0].recursve\": unknown key (did you mean \"recursive\"?)" \
	"unknown key report"

# A YAML syntax error: libyaml's position.
put "$MAM_SRC/tests/data/config/syntax-error.yaml" "$T/syntax.yaml"
run_cli out check-config -c "$T/syntax.yaml"
assert_eq "$rc" 1 "check-config exit status with a syntax error"
[[ "$out" == "$T/syntax.yaml:5:8: YAML syntax error: "* ]] || fail "syntax error report: $out"

# Every error of a file, one line each, in file order.
cat >"$T/many.yaml" <<'CFG'
ingest:
  settle_ms: soon
tenants:
  - code: acme
    name: ACME
    drop_folders:
      - path: drop/acme
        after_ingest: move
  - code: acme
    name: Again
CFG
chmod 600 "$T/many.yaml"
run_cli out check-config -c "$T/many.yaml"
assert_eq "$rc" 1 "check-config exit status with several errors"
assert_eq "$(cut -d: -f2,3 <<<"$out" | tr '\n' ' ')" "2:14 7:15 8:23 9:11 " "positions of the errors"
grep -q 'key "tenants\[0\].drop_folders\[0\].move_to": after_ingest: move needs move_to' <<<"$out" ||
	fail "missing move_to not reported: $out"

# A warning (hash_read_size below 64 KiB acts as 64 KiB) is printed with its
# place, and the file is still accepted.
cat >"$T/small.yaml" <<'CFG'
database:
  conninfo: ""
ingest:
  hash_read_size: 4096
CFG
chmod 600 "$T/small.yaml"
run_cli out check-config -c "$T/small.yaml"
assert_eq "$rc" 0 "check-config exit status with a warning"
assert_eq "$out" "$T/small.yaml:4:19: warning: key \"ingest.hash_read_size\": 4096 is below 65536 and acts as 65536 (libmagic reads the first 65536 bytes in one buffer)
configuration OK" "check-config output with a warning"

# The other commands load the configuration too, and refuse a bad one.
run_cli out migrate -c "$T/line8.yaml"
assert_eq "$rc" 1 "migrate with a bad configuration"
grep -q "$T/line8.yaml:8:9" <<<"$out" || fail "migrate did not report the error: $out"

# A file others may write is refused, naming the file and its mode.
put "$T/shipped.yaml" "$T/open.yaml"
chmod 664 "$T/open.yaml"
run_cli out check-config -c "$T/open.yaml"
assert_eq "$rc" 1 "check-config exit status on a group-writable file"
grep -q "^$T/open.yaml: .*group- or world-writable (mode 0664)" <<<"$out" || fail "mode report: $out"

# A password in the conninfo is refused and pgpass is suggested.
sed 's|conninfo: "host=/run/postgresql dbname=mam"|conninfo: "postgresql://mam:s3cret@db/mam"|' \
	"$T/shipped.yaml" >"$T/pw.yaml"
chmod 600 "$T/pw.yaml"
grep -q s3cret "$T/pw.yaml" || fail "test setup: password not in the file"
run_cli out check-config -c "$T/pw.yaml"
assert_eq "$rc" 1 "check-config exit status with a password"
grep -q "$T/pw.yaml:[0-9]*:[0-9]*: key \"database.conninfo\": .*pgpass" <<<"$out" || fail "password report: $out"
grep -q s3cret <<<"$out" && fail "the password was echoed: $out"

# Where the configuration comes from: -c, then $MAM_INGEST_CONFIG, then /etc.
run_cli out check-config
if [ -e /etc/mam-ingest/mam-ingest.yaml ]; then
	log "/etc/mam-ingest/mam-ingest.yaml exists here: not checking the built-in default"
else
	assert_eq "$rc" 1 "check-config without any configuration"
	grep -q '^/etc/mam-ingest/mam-ingest.yaml: could not open' <<<"$out" || fail "default path: $out"
fi
MAM_INGEST_CONFIG="$T/shipped.yaml" run_cli out check-config
assert_eq "$out" "configuration OK" "configuration from \$MAM_INGEST_CONFIG"
MAM_INGEST_CONFIG="$T/line8.yaml" run_cli out check-config
grep -q "^$T/line8.yaml:8:9" <<<"$out" || fail "\$MAM_INGEST_CONFIG not used: $out"
MAM_INGEST_CONFIG="$T/line8.yaml" run_cli out check-config -c "$T/shipped.yaml"
assert_eq "$out" "configuration OK" "-c over \$MAM_INGEST_CONFIG"
MAM_INGEST_CONFIG="$T/shipped.yaml" run_cli out -c "$T/line8.yaml" check-config
grep -q "^$T/line8.yaml:8:9" <<<"$out" || fail "-c before the command not used: $out"

# --help on every subcommand, and on the program.
for sub in run scan worker migrate check-config status; do
	run_cli out "$sub" --help
	assert_eq "$rc" 0 "$sub --help exit status"
	[[ "$out" == "usage: mam-ingest $sub "* ]] || fail "$sub --help: $out"
	run_cli top --help
	grep -q "^  $sub " <<<"$top" || fail "mam-ingest --help does not list $sub"
done
run_cli out nosuchcommand
assert_eq "$rc" 2 "exit status of an unknown command"

# --version: the project version from CMakeLists.txt.
want=$(sed -n 's/^project(mam-ingest VERSION \([0-9.]*\).*/\1/p' "$MAM_SRC/CMakeLists.txt")
run_cli out --version
assert_eq "$rc" 0 "--version exit status"
assert_eq "$out" "mam-ingest $want" "--version output"
log "config CLI OK"

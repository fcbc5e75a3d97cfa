#!/usr/bin/env bash
# Packaging: what an administrator gets from `apt install` / `rpm -i`.
#
#  1. The service contract: both units pass `systemd-analyze security
#     --offline=true` with an exposure of at most 2.0 (also with the example
#     drop-ins) and no unknown directive; both daemons, started the way
#     systemd starts a Type=notify service (NOTIFY_SOCKET, WATCHDOG_USEC),
#     report READY=1, STATUS=, WATCHDOG=1 and STOPPING=1.
#  2. packaging/build-packages builds the .deb and the .rpm; lintian reports
#     no error on the .deb, rpmlint none on the .rpm; dependencies were
#     detected (shlibs / ELF requires), the config is a conffile and
#     %config(noreplace).
#  3. The .rpm payload installs into an empty `rpm --root`, and its sysusers
#     and tmpfiles files create the user and the state directory there.
#  4. The .deb installs with apt into a clean Debian 12 minbase chroot
#     (debootstrap, no systemd: the useradd fallback runs): the binary runs,
#     check-config passes on the shipped file (also as the service user), the
#     user and directories exist, both services are enabled and nothing was
#     started, the installed binary finds its migrations in
#     /usr/share/mam-ingest/sql and applies them to a real PostgreSQL, a
#     local edit of the config survives a reinstall, remove keeps the config,
#     purge removes /etc/mam-ingest and /var/lib/mam-ingest.
#
# Parts 2-4 need root, debootstrap and the Debian archive: without them the
# test exits 77 (skipped) after part 1, saying why. The minbase chroot is
# cached as a tarball in $MAM_PKG_CACHE (default /var/cache/mam-ingest-test),
# with apt's lists and downloaded packages, so a warm run takes about a
# minute. Under the sanitizer pass (MAM_SANITIZED=1) only part 1 runs: the
# packages are built without sanitizers and were checked in the plain pass.
. "$MAM_SRC/tests/lib/common.sh"

MIRROR=${MAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${MAM_PKG_CACHE:-/var/cache/mam-ingest-test}
VERSION=$(sed -n 's/^project(mam-ingest VERSION \([0-9.]*\).*/\1/p' "$MAM_SRC/CMakeLists.txt")
UNITS=("$MAM_SRC/packaging/systemd/mam-ingest.service"
	"$MAM_SRC/packaging/systemd/mam-ingest-worker.service")

# --- 1. the service contract ------------------------------------------------

# exposure UNITFILE: the overall exposure systemd-analyze gives the unit
# (with any drop-ins in UNITFILE.d/); fails on warnings about the unit file.
exposure() {
	local out err
	out=$(systemd-analyze security --offline=true --no-pager "$1" 2>"$T/analyze.err") ||
		fail "systemd-analyze security failed on $1: $(cat "$T/analyze.err")"
	err=$(grep -v 'is not executable' "$T/analyze.err" | grep -E "$(basename "$1")" || true)
	[ -z "$err" ] || fail "systemd-analyze warns about $1: $err"
	printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
# within LIMIT VALUE: VALUE <= LIMIT, as decimals.
within() { awk -v l="$1" -v v="$2" 'BEGIN { exit !(v != "" && v + 0 <= l + 0) }'; }

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (package systemd)"
for unit in "${UNITS[@]}"; do
	name=$(basename "$unit")
	score=$(exposure "$unit")
	within 2.0 "$score" || fail "$name: exposure $score, want <= 2.0"
	log "$name: exposure $score"
	# The documented drop-ins must not weaken the sandbox past the limit.
	mkdir -p "$T/units/$name.d"
	cp "$unit" "$T/units/$name"
	cp "$MAM_SRC"/packaging/examples/*.conf "$T/units/$name.d/"
	score=$(exposure "$T/units/$name")
	within 2.0 "$score" || fail "$name with the example drop-ins: exposure $score"
	grep -qx 'Type=notify' "$unit" || fail "$name is not Type=notify"
	grep -q '^ExecStartPre=/usr/bin/mam-ingest check-config ' "$unit" ||
		fail "$name does not check the configuration before starting"
	grep -qx 'User=mam-ingest' "$unit" || fail "$name does not run as mam-ingest"
done

# notify_receiver SOCKET LOG: play systemd's side of NOTIFY_SOCKET; every
# datagram becomes one line of LOG (newlines inside shown as " | ").
notify_receiver() {
	perl -MSocket -e '
		socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
		bind($s, pack_sockaddr_un($ARGV[0])) or die "bind: $!";
		open(my $f, ">>", $ARGV[1]) or die "open: $!";
		$f->autoflush(1);
		while (defined(recv($s, my $m, 4096, 0))) { $m =~ s/\n/ | /g; print $f "$m\n"; }
	' "$1" "$2" &
	RECEIVER=$!
	_pids+=("$RECEIVER")
	wait_for 10 "notify socket $1" test -S "$1"
}
count_lines() { grep -c -- "$1" "$2" 2>/dev/null || true; }
has_line() { grep -q -- "$1" "$2"; }
has_lines() { [ "$(count_lines "$2" "$3")" -ge "$1" ]; }

# The daemons do not need a reachable database to report readiness: they
# connect in the background and say so in STATUS.
mkdir -p "$T/drop"
cat >"$T/contract.yaml" <<YAML
database:
  conninfo: "host=$T/no-database dbname=mam connect_timeout=2"
worker:
  derivatives_root: $T/derivatives
tenants:
  - code: t1
    name: Tenant One
    drop_folders:
      - path: $T/drop
YAML
for cmd in run worker; do
	sock=$T/notify-$cmd.sock msgs=$T/notify-$cmd.log
	notify_receiver "$sock" "$msgs"
	# WATCHDOG_PID must be the daemon's PID, as systemd sets it: exec keeps it.
	NOTIFY_SOCKET=$sock WATCHDOG_USEC=400000 bash -c \
		'export WATCHDOG_PID=$$; exec "$MAM_BIN" "$@"' mam-ingest "$cmd" -c "$T/contract.yaml" \
		>>"$T/daemon.log" 2>&1 &
	pid=$!
	_pids+=("$pid")
	wait_for 30 "READY=1 from mam-ingest $cmd" has_line '^READY=1$' "$msgs"
	# WatchdogSec=0.4s: a ping at start and every 200 ms from the loop.
	wait_for 30 "three WATCHDOG=1 from mam-ingest $cmd" has_lines 3 '^WATCHDOG=1$' "$msgs"
	if [ "$cmd" = run ]; then
		wait_for 30 "STATUS= from mam-ingest run" has_line '^STATUS=.*database' "$msgs"
	fi
	kill -TERM "$pid"
	wait "$pid" || fail "mam-ingest $cmd exited with $? after SIGTERM"
	has_line '^STOPPING=1$' "$msgs" || fail "mam-ingest $cmd stopped without STOPPING=1"
	log "mam-ingest $cmd: $(sed 's/^STATUS=.*/STATUS=.../' "$msgs" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';')"
	if [ "$cmd" = run ]; then
		log "mam-ingest run: first $(grep -m1 '^STATUS=' "$msgs")"
	fi
	kill "$RECEIVER"
	wait "$RECEIVER" 2>/dev/null || true
done

# --- what parts 2-4 need ----------------------------------------------------

if [ "${MAM_SANITIZED:-0}" = 1 ]; then
	skip "service contract OK; packages are built and installed in the plain (non-sanitizer) pass"
fi
[ "$(id -u)" = 0 ] || skip "service contract OK; building packages and debootstrap need root"
missing=()
for tool in dpkg-buildpackage:dpkg-dev dh:debhelper lintian:lintian \
	rpmbuild:rpm debootstrap:debootstrap unshare:util-linux; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
[ ${#missing[@]} -eq 0 ] || skip "service contract OK; missing Debian packages: ${missing[*]}"
curl -sfI --max-time 10 "$MIRROR/dists/bookworm/Release" >/dev/null ||
	skip "service contract OK; the Debian archive ($MIRROR) is not reachable"

# --- 2. build and lint ------------------------------------------------------

OUT=$T/out
"$MAM_SRC/packaging/build-packages" "$OUT" >"$T/build.log" 2>&1 ||
	{ cat "$T/build.log" >&2; fail "packaging/build-packages failed"; }
DEB=$OUT/mam-ingest_${VERSION}_amd64.deb
RPM=$(ls "$OUT"/mam-ingest-"$VERSION"-*.x86_64.rpm 2>/dev/null | head -1)
[ -f "$DEB" ] || fail "no $DEB (built: $(ls "$OUT"))"
[ -n "$RPM" ] || fail "no .rpm (built: $(ls "$OUT"))"

lintian --fail-on error --no-tag-display-limit "$DEB" >"$T/lintian.log" 2>&1 ||
	{ cat "$T/lintian.log" >&2; fail "lintian reports errors on the .deb"; }
log "lintian: $(grep -c '^E:' "$T/lintian.log" || true) errors," \
	"$(grep -c '^W:' "$T/lintian.log" || true) warnings"
if command -v rpmlint >/dev/null; then
	rpmlint -r "$MAM_SRC/packaging/rpm/mam-ingest.rpmlintrc" "$RPM" >"$T/rpmlint.log" 2>&1 || true
	grep -q ' 0 errors' "$T/rpmlint.log" ||
		{ cat "$T/rpmlint.log" >&2; fail "rpmlint reports errors on the .rpm"; }
	log "rpmlint: $(grep -o '[0-9]* errors, [0-9]* warnings' "$T/rpmlint.log")"
else
	log "NOTE: rpmlint is not installed (Debian package rpmlint): .rpm not linted"
fi

# The .deb's metadata: detected library dependencies, the conffile, and
# maintainer scripts that enable but never start the services.
depends=$(dpkg-deb -f "$DEB" Depends)
for lib in libuv1 libpq5 libyaml-0-2 libssl3 libmagic1 libsystemd0 libc6; do
	[[ $depends == *"$lib"* ]] || fail "Depends lacks $lib (dpkg-shlibdeps): $depends"
done
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/mam-ingest/mam-ingest.yaml ||
	fail "/etc/mam-ingest/mam-ingest.yaml is not a conffile"
postinst=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst)
[[ $postinst == *"deb-systemd-helper enable 'mam-ingest.service'"* ]] ||
	fail "postinst does not enable mam-ingest.service"
[[ $postinst == *"deb-systemd-helper enable 'mam-ingest-worker.service'"* ]] ||
	fail "postinst does not enable mam-ingest-worker.service"
if printf '%s\n' "$postinst" | grep -Eq 'deb-systemd-invoke (start|restart) |systemctl (start|restart) '; then
	fail "postinst starts a service on installation"
fi

# --- 3. the .rpm payload ----------------------------------------------------

R=$T/rpmroot
mkdir -p "$R"
rpm --root "$R" --initdb
rpm --root "$R" -i --nodeps --noscripts "$RPM" 2>"$T/rpm-install.log" ||
	{ cat "$T/rpm-install.log" >&2; fail "rpm -i into an empty root failed"; }
rpm --root "$R" -q mam-ingest >/dev/null || fail "mam-ingest not in the rpm database"
for f in /usr/bin/mam-ingest /etc/mam-ingest/mam-ingest.yaml \
	/usr/lib/systemd/system/mam-ingest.service /usr/lib/systemd/system/mam-ingest-worker.service \
	/usr/lib/systemd/system-preset/80-mam-ingest.preset /usr/lib/sysusers.d/mam-ingest.conf \
	/usr/lib/tmpfiles.d/mam-ingest.conf /usr/share/man/man8/mam-ingest.8 \
	/usr/share/man/man5/mam-ingest.yaml.5 /usr/share/doc/mam-ingest/examples/folders.conf \
	/usr/share/doc/mam-ingest/examples/pgpass.conf; do
	compgen -G "$R$f*" >/dev/null || fail "the .rpm does not install $f"
done
for f in "$MAM_SRC"/sql/*.sql; do
	cmp -s "$f" "$R/usr/share/mam-ingest/sql/$(basename "$f")" ||
		fail "the .rpm lacks migration $(basename "$f")"
done
rpm -qp --configfiles "$RPM" | grep -qx /etc/mam-ingest/mam-ingest.yaml ||
	fail "the .rpm does not mark the config as a configuration file"
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" |
	grep -qx 'cn /etc/mam-ingest/mam-ingest.yaml' || fail "the config is not %config(noreplace)"
rpm -qpR "$RPM" | grep -q '^libuv\.so\.1()' || fail "the .rpm's requires were not detected"
# The scriptlets cannot run in an empty root (no shell there): parse them.
rpm -qp --scripts "$RPM" | awk -v dir="$T" '
	/^[a-z]+ scriptlet \(using \/bin\/sh\):$/ { f = dir "/scriptlet." $1; printf "" >f; next }
	f { print >>f }'
for s in preinstall postinstall preuninstall postuninstall; do
	[ -s "$T/scriptlet.$s" ] || fail "the .rpm has no $s scriptlet"
	sh -n "$T/scriptlet.$s" || fail "the .rpm's $s scriptlet is not valid sh"
done
grep -q 'systemctl --no-reload preset mam-ingest.service mam-ingest-worker.service' \
	"$T/scriptlet.postinstall" || fail "the .rpm does not apply the preset on installation"
assert_eq "$("$R/usr/bin/mam-ingest" --version)" "mam-ingest $VERSION" "rpm binary --version"
# The payload's sysusers.d and tmpfiles.d entries, applied to that root.
systemd-sysusers --root="$R" >/dev/null
grep -q '^mam-ingest:x:[0-9]*:[0-9]*:mam-ingest media ingester:/var/lib/mam-ingest:/usr/sbin/nologin$' \
	"$R/etc/passwd" || fail "sysusers.d did not create the user: $(cat "$R/etc/passwd")"
systemd-tmpfiles --root="$R" --create mam-ingest.conf
uid=$(awk -F: '$1 == "mam-ingest" { print $3 }' "$R/etc/passwd")
assert_eq "$(stat -c '%u %a' "$R/var/lib/mam-ingest/derivatives")" "$uid 750" \
	"tmpfiles.d: owner and mode of /var/lib/mam-ingest/derivatives"

# --- 4. apt into a clean Debian 12 -----------------------------------------

mkdir -p "$CACHE/archives/partial"
TARBALL=$CACHE/bookworm-minbase-$(dpkg --print-architecture).tar.gz
(
	flock 9
	# Rebuilt monthly so apt's lists and the base system stay close to the archive.
	if [ -z "$(find "$TARBALL" -mtime -30 2>/dev/null)" ]; then
		log "debootstrap --variant=minbase bookworm (cached in $CACHE afterwards)"
		rm -rf "$CACHE/mk"
		debootstrap --variant=minbase bookworm "$CACHE/mk" "$MIRROR" >"$T/debootstrap.log" 2>&1 ||
			{ tail -20 "$T/debootstrap.log" >&2; exit 1; }
		tar -C "$CACHE/mk" -czf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
		rm -rf "$CACHE/mk"
	fi
) 9>"$CACHE/.lock" || fail "debootstrap failed"
C=$T/chroot
mkdir -p "$C"
tar -C "$C" -xzf "$TARBALL"
cp /etc/resolv.conf "$C/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$C/usr/sbin/policy-rc.d"
chmod 755 "$C/usr/sbin/policy-rc.d"
cp "$DEB" "$C/tmp/"

# A PostgreSQL for the installed binary, reached through its socket directory.
pg_start
mkdir -p "$C$PGHOST"

# in_chroot CMD...: run CMD in the chroot, in a private mount namespace that
# holds /proc, the shared apt cache and the PostgreSQL socket; the mounts
# vanish with the namespace even if the test is killed.
in_chroot() {
	unshare --mount --propagation private -- sh -c '
		c=$1 cache=$2 pgsock=$3
		shift 3
		mount -t proc proc "$c/proc" &&
		mount --bind "$cache/archives" "$c/var/cache/apt/archives" &&
		mount --bind "$pgsock" "$c$pgsock" &&
		exec chroot "$c" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' \
		in_chroot "$C" "$CACHE" "$PGHOST" "$@"
}
apt_in_chroot() {
	in_chroot apt-get -q -y -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 "$@" >>"$T/apt.log" 2>&1 ||
		{ tail -30 "$T/apt.log" >&2; fail "apt-get $* failed in the chroot"; }
}

apt_in_chroot update
apt_in_chroot install --no-install-recommends "/tmp/$(basename "$DEB")"
in_chroot test ! -e /usr/bin/systemd-sysusers || fail "the chroot has systemd: fallback not tested"

assert_eq "$(in_chroot mam-ingest --version)" "mam-ingest $VERSION" "installed --version"
assert_eq "$(in_chroot mam-ingest check-config -c /etc/mam-ingest/mam-ingest.yaml 2>&1)" \
	"configuration OK" "check-config on the shipped configuration"
assert_eq "$(in_chroot setpriv --reuid=mam-ingest --regid=mam-ingest --init-groups \
	mam-ingest check-config 2>&1)" "configuration OK" "check-config as the service user"
in_chroot getent passwd mam-ingest | grep -q '^mam-ingest:x:[0-9]*:[0-9]*:.*:/var/lib/mam-ingest:/usr/sbin/nologin$' ||
	fail "user mam-ingest missing or wrong: $(in_chroot getent passwd mam-ingest || true)"
assert_eq "$(in_chroot stat -c '%U:%G %a' /var/lib/mam-ingest /var/lib/mam-ingest/derivatives | tr '\n' ' ')" \
	"mam-ingest:mam-ingest 750 mam-ingest:mam-ingest 750 " "state directories"
for unit in mam-ingest.service mam-ingest-worker.service; do
	assert_eq "$(readlink "$C/etc/systemd/system/multi-user.target.wants/$unit")" \
		"/lib/systemd/system/$unit" "$unit enabled"
done

# The installed binary finds /usr/share/mam-ingest/sql by itself.
cat >"$C/tmp/migrate.yaml" <<YAML
database:
  conninfo: "host=$PGHOST user=postgres dbname=mam"
YAML
in_chroot mam-ingest migrate -c /tmp/migrate.yaml >"$T/migrate.log" 2>&1 ||
	{ cat "$T/migrate.log" >&2; fail "installed mam-ingest migrate failed"; }
n_sql=$(ls "$C"/usr/share/mam-ingest/sql/*.sql | wc -l)
[ "$n_sql" -ge 1 ] || fail "no migrations installed"
assert_eq "$(psql_q 'select count(*) from schema_migrations')" "$n_sql" "migrations applied"
assert_eq "$(psql_q "select to_regclass('assets') is not null")" "t" "assets table created"

# A local edit survives a reinstall; remove keeps the config; purge does not.
echo "# edited by the administrator" >>"$C/etc/mam-ingest/mam-ingest.yaml"
apt_in_chroot install --reinstall --no-install-recommends "/tmp/$(basename "$DEB")"
grep -q '^# edited by the administrator$' "$C/etc/mam-ingest/mam-ingest.yaml" ||
	fail "reinstalling replaced the edited configuration"
apt_in_chroot remove mam-ingest
[ ! -e "$C/usr/bin/mam-ingest" ] || fail "remove left /usr/bin/mam-ingest"
[ -f "$C/etc/mam-ingest/mam-ingest.yaml" ] || fail "remove deleted the configuration"
apt_in_chroot purge mam-ingest
for p in /etc/mam-ingest /var/lib/mam-ingest /etc/systemd/system/multi-user.target.wants/mam-ingest.service; do
	[ ! -e "$C$p" ] && [ ! -L "$C$p" ] || fail "purge left $p"
done
log "package built, linted, installed, migrated, upgraded in place and purged"

# Shared by scripts/test and scripts/demo: install missing Debian packages and build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# install_deps: apt-get install whatever in scripts/deps.txt is not installed yet;
# a second run finds everything installed and does nothing.
install_deps() {
	local missing=() pkg
	while read -r pkg; do
		pkg=${pkg%%#*}
		pkg=${pkg//[[:space:]]/}
		[ -n "$pkg" ] || continue
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$pkg")
	done <"$ROOT/scripts/deps.txt"
	if [ ${#missing[@]} -eq 0 ]; then
		echo "== every package in scripts/deps.txt is installed"
		return 0
	fi
	echo "== installing: ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

# build DIR [cmake args...]
build() {
	local dir=$1
	shift
	cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$dir" -j"$(nproc)"
}

#!/usr/bin/env bash
# build-jaeger.sh: make sure Jaeger v2 is in a directory at a pinned version.
#
#   scripts/build-jaeger.sh DIR VERSION
#
# Jaeger v2 is github.com/jaegertracing/jaeger/cmd/jaeger (the module keeps
# its v1 tags for the v2 binary). `go install ...@VERSION` refuses it: its
# go.mod has a replace directive (github.com/Shopify/sarama), and go install
# builds a module's packages only when the module would be read the same as
# a main module. So this builds it from a small main module of its own
# (in a temporary directory) that requires the Jaeger module at VERSION and
# copies every replace directive of Jaeger's own go.mod: the dependency
# versions are the ones Jaeger's go.mod selects, as in its own build.
#
# When DIR/jaeger exists and its Go build information names the Jaeger
# module at VERSION, nothing is done; otherwise it is (re)built, and a
# failed build fails loudly with the command to run again. The tests never
# skip for a missing tool: this is how they get theirs.
set -euo pipefail
mkdir -p "$1"
dir=$(cd "$1" && pwd) want=$2
mod=github.com/jaegertracing/jaeger
pkg=$mod/cmd/jaeger
go=${GO:-go}
bin="$dir/jaeger"
have() {
	# The program's package path and the Jaeger module's version, from the
	# "path" and "mod" lines of `go version -m` (the main module of a
	# program built from a dependency's package is that dependency).
	"$go" version -m "$bin" 2>/dev/null | awk -v pkg="$pkg" -v mod="$mod" '
		$1 == "path" && $2 == pkg { ok = 1 }
		$1 == "mod" && $2 == mod { v = $3 }
		END { if (ok) print v }'
}
if [ -x "$bin" ]; then
	got=$(have || true)
	if [ "$got" = "$want" ]; then
		exit 0
	fi
	echo "$bin is ${got:-of an unknown version}, want $want: rebuilding" >&2
fi
fail() {
	echo "building jaeger failed: $*; by hand: GO=$go scripts/build-jaeger.sh $dir $want" >&2
	exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gomod=$("$go" mod download -json "$mod@$want" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -n "$gomod" ] || fail "go mod download $mod@$want gave no go.mod"
(
	cd "$work"
	"$go" mod init observatory.local/jaeger-build >/dev/null 2>&1
	# Jaeger's replace directives (single lines and blocks), each as
	# -replace=old[@v]=new[@v].
	awk '
		/^replace[[:space:]]*\(/ { block = 1; next }
		block && /^\)/ { block = 0; next }
		block || /^replace[[:space:]]/ {
			line = $0
			sub(/\/\/.*/, "", line)
			sub(/^replace[[:space:]]+/, "", line)
			n = split(line, side, "=>")
			if (n != 2) next
			split(side[1], o, " "); split(side[2], w, " ")
			old = o[1]; if (o[2] != "") old = old "@" o[2]
			new = w[1]; if (w[2] != "") new = new "@" w[2]
			print old "=" new
		}' "$gomod" | while read -r r; do "$go" mod edit "-replace=$r"; done
	echo "$go get $pkg@$want" >&2
	"$go" get "$pkg@$want"
	echo "$go build -trimpath -o $bin $pkg" >&2
	"$go" build -trimpath -o "$bin" "$pkg"
) || fail "see above"
got=$(have || true)
if [ "$got" != "$want" ]; then
	fail "$bin reports version ${got:-(none)} after the build"
fi

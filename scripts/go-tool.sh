#!/usr/bin/env bash
# go-tool.sh: make sure a Go program is in a directory at a pinned version.
#
#   scripts/go-tool.sh DIR NAME PACKAGE@VERSION
#
# NAME is the binary `go install PACKAGE@VERSION` makes. When DIR/NAME
# exists and was built from PACKAGE's module at VERSION (read from the
# binary's own build information with `go version -m`), nothing is done;
# otherwise it is (re)installed with GOBIN=DIR, and a failed install fails
# loudly with the command that installs it. The tests never skip for a
# missing tool: this is how they get theirs.
set -euo pipefail
dir=$1 name=$2 spec=$3
pkg=${spec%@*} want=${spec##*@}
go=${GO:-go}
bin="$dir/$name"
have() {
	# The main module's version: the "mod" line of `go version -m`.
	"$go" version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}
if [ -x "$bin" ]; then
	got=$(have || true)
	if [ "$got" = "$want" ]; then
		exit 0
	fi
	echo "$bin is ${got:-of an unknown version}, want $want: reinstalling" >&2
fi
echo "GOBIN=$dir $go install $spec" >&2
mkdir -p "$dir"
if ! GOBIN="$dir" "$go" install "$spec"; then
	echo "installing $name failed; by hand: GOBIN=$dir $go install $spec" >&2
	exit 1
fi
got=$(have || true)
if [ "$got" != "$want" ]; then
	echo "$bin reports version ${got:-(none)} after installing $spec" >&2
	exit 1
fi

#!/usr/bin/env bash
# build-otelcol.sh: make sure the Observatory Collector is in a directory,
# built from the builder manifest in the repository.
#
#   scripts/build-otelcol.sh DIR
#
# DIR must hold the collector builder (`make deps` installs it there with
# scripts/go-tool.sh, pinned). This runs it on
# dashboards/otel-collector/builder.yaml and writes DIR/otelcol-observatory,
# and beside it DIR/otelcol-observatory.manifest.sha256: the SHA-256 of the
# manifest and the builder's version it was built from. When both are there
# and the stamp matches the manifest and builder of now, nothing is done;
# any change to the manifest (a component, a version) or to the builder
# pin rebuilds, so a stale binary never passes for the manifest. The
# pipeline test (vmstack) checks the same stamp, and the binary's Go build
# information against every module the manifest lists.
#
# The manifest's output_path is relative: the builder runs in a temporary
# directory, where it writes the generated sources and the binary, and only
# the binary is kept. A failed build fails loudly with the command to run
# again. The tests never skip for a missing tool: this is how they get it.
set -euo pipefail
dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
manifest="$root/dashboards/otel-collector/builder.yaml"
go=${GO:-go}
name=otelcol-observatory
bin="$dir/$name"
stampfile="$bin.manifest.sha256"
builder="$dir/builder"

fail() {
	echo "building $name failed: $*; by hand: GO=$go scripts/build-otelcol.sh $dir" >&2
	exit 1
}
[ -x "$builder" ] || fail "no collector builder at $builder (make deps installs it)"
# The stamp: the manifest's hash, then the builder's version line.
stamp() {
	printf '%s\n%s\n' "$(sha256sum "$manifest" | cut -d' ' -f1)" "$("$builder" version 2>&1 | head -n1)"
}
want=$(stamp)
if [ -x "$bin" ] && [ -f "$stampfile" ]; then
	if [ "$(cat "$stampfile")" = "$want" ]; then
		exit 0
	fi
	echo "$bin was built from another manifest or builder: rebuilding" >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The builder runs `go` from PATH: put the one asked for first.
gobin=$(command -v "$go") || fail "no $go"
export PATH="$(dirname "$gobin"):$PATH"
echo "(cd $work && $builder --config $manifest)" >&2
(cd "$work" && "$builder" --config "$manifest") >"$work/builder.log" 2>&1 || {
	tail -n 40 "$work/builder.log" >&2
	fail "see above"
}
built=$(find "$work" -type f -name "$name" -perm -u+x | head -n1)
[ -n "$built" ] || fail "the builder wrote no $name"
rm -f "$stampfile"
cp "$built" "$bin.tmp"
mv "$bin.tmp" "$bin"
printf '%s\n' "$want" >"$stampfile"

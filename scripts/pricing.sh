#!/usr/bin/env bash
# pricing.sh: refresh fleet/pricing.json from the pinned price list of
# @pydantic/genai-prices (npm, MIT). `make pricing` runs it.
#
#   scripts/pricing.sh
#
# It packs the pinned package from the npm registry into a temporary
# directory (checking the tarball's SHA-1 against the pinned one), reads
# the package's price list, and converts it with tools/pricegen, merging
# fleet/pricing_overlay.json. The package ships JavaScript only: its
# dist/index.js embeds the list (the upstream prices/data.json, built into
# the bundle), and the module returns it, untouched by any update, from
# waitForUpdate(). The snapshot date is the pinned version's publish date
# on npm, so that the same package gives byte-identical output whenever it
# runs; PRICING_AS_OF=YYYY-MM-DD takes the list's dated prices in effect
# on another day. Any surprise (another tarball, no such export, a list of
# another shape, a price or rule the converter does not know) fails the
# run and leaves fleet/pricing.json as it was.
#
# Environment: PRICING_AS_OF (see above); GO, NODE, NPM (the programs,
# default go, node, npm).
set -euo pipefail

cd "$(dirname "$0")/.."
package=@pydantic/genai-prices
version=0.1.8
sha1=a9cf9a6486bfeec591e9e5bdfaa7121e6f6afffe
go=${GO:-go} node=${NODE:-node} npm=${NPM:-npm}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && "$npm" pack --silent "$package@$version" >/dev/null)
tarball=$(ls "$tmp"/*.tgz)
got=$(sha1sum "$tarball" | cut -d' ' -f1)
if [ "$got" != "$sha1" ]; then
	echo "pricing.sh: $package@$version packed to SHA-1 $got, want $sha1" >&2
	exit 1
fi
tar -xzf "$tarball" -C "$tmp"
pkgdir=$tmp/package
for f in package.json dist/index.js; do
	if [ ! -f "$pkgdir/$f" ]; then
		echo "pricing.sh: $package@$version has no $f; the converter does not know this package layout" >&2
		exit 1
	fi
done

# The list as the package's own module holds it. JSON.stringify keeps the
# bundle's key order, so the same package gives the same bytes.
cat >"$tmp/dump.mjs" <<'EOF'
const mod = await import(process.argv[2]);
if (typeof mod.waitForUpdate !== "function") {
	throw new Error("the module exports no waitForUpdate: the converter does not know this package");
}
const providers = await mod.waitForUpdate();
if (!Array.isArray(providers) || providers.length === 0) {
	throw new Error("waitForUpdate() did not give a list of providers");
}
process.stdout.write(JSON.stringify(providers));
EOF
"$node" "$tmp/dump.mjs" "$pkgdir/dist/index.js" >"$tmp/data.json"

as_of=${PRICING_AS_OF:-}
if [ -z "$as_of" ]; then
	published=$("$npm" view "$package@$version" time --json |
		"$node" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=JSON.parse(s)[process.argv[1]];if(!t)process.exit(1);process.stdout.write(t)})' "$version")
	as_of=${published:0:10}
fi

"$go" run ./tools/pricegen -list "$tmp/data.json" -package "$pkgdir/package.json" \
	-overlay fleet/pricing_overlay.json -as-of "$as_of" -out "$tmp/pricing.json"
mv "$tmp/pricing.json" fleet/pricing.json
echo "pricing.sh: fleet/pricing.json is $package@$version as of $as_of"

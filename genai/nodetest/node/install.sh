#!/usr/bin/env bash
# install.sh: make sure the node project of genai/nodetest is installed at
# its committed lock, outside the source tree.
#
#   genai/nodetest/node/install.sh DIR [NPM_CACHE]
#
# It copies package.json and package-lock.json into DIR and runs `npm ci`
# there (npm's cache in NPM_CACHE, default DIR/../npm), then leaves a copy
# of the lock it installed as DIR/installed.lock. When that copy equals the
# committed lock nothing is done, so a warm run costs one cmp; a changed
# lock reinstalls. The Go tests (nodetest.Run) check the same copy and
# fail, never skip, without it. Install scripts are not run: none of the
# packages needs one, and a test dependency has no business running code
# at install time.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
dest=$1
cache=${2:-$dest/../npm}
if cmp -s "$src/package-lock.json" "$dest/installed.lock" 2>/dev/null && [ -d "$dest/node_modules" ]; then
	exit 0
fi
command -v npm >/dev/null || { echo "install.sh: npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
mkdir -p "$dest" "$cache"
rm -f "$dest/installed.lock"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
echo "npm ci --prefix $dest --cache $cache" >&2
if ! npm ci --prefix "$dest" --cache "$cache" --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error; then
	echo "install.sh: npm ci failed; by hand: npm ci --prefix $dest --cache $cache --ignore-scripts" >&2
	exit 1
fi
cp "$src/package-lock.json" "$dest/installed.lock"

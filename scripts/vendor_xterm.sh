#!/usr/bin/env bash
# Vendor the built files of @xterm/xterm (the dashboard's Screen view) from the npm registry
# into static/vendor/xterm/: lib/xterm.mjs, css/xterm.css and LICENSE, unchanged. The tarball
# is checked against the integrity the registry published for this version. No build step.
#   scripts/vendor_xterm.sh            # the pinned version
set -euo pipefail
VERSION=6.0.0
INTEGRITY="sha512-TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg=="
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/static/vendor/xterm"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm pack "@xterm/xterm@$VERSION" --silent >/dev/null
TARBALL="xterm-xterm-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
  echo "vendor_xterm: $TARBALL is $GOT, the registry published $INTEGRITY" >&2
  exit 1
fi
tar xzf "$TARBALL"
mkdir -p "$DEST"
cp package/lib/xterm.mjs package/css/xterm.css package/LICENSE "$DEST/"
(cd "$DEST" && sha256sum xterm.mjs xterm.css LICENSE)
echo "vendor_xterm: @xterm/xterm $VERSION in $DEST"

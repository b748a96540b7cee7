#!/usr/bin/env bash
# Builds the Moddable SDK host tools (xsc, xsl, mcconfig, mcsim) from ../shared/moddable-sdk (read-only) into a
# cache outside the clone, keyed by the SDK's content hash, and prints the MODDABLE path on stdout.
#
#   eval "$(tools/moddable-setup.sh --env)"     # exports MODDABLE and PATH as the SDK's Getting Started says
#   tools/moddable-setup.sh --check              # exit 0 only if the cache is already built (never builds)
#
# Source: $IOTKX_MODDABLE_SRC, else ../shared/moddable-sdk next to the clone, else /work/shared/moddable-sdk.
# Cache:  $IOTKX_MODDABLE_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/iotkx/moddable-<sha256 of the SDK's files>.
# A fresh machine builds from scratch (about 2.5 min on 2 cores); a repeated run reuses the cache in a second.
# Only what the firmware's tests need is built: xsc, xsid, xsl, the tools (mcconfig, mcrun, ...) and mcsim (the
# lin simulator the firmware runs in). xsbug (the GUI debugger) and serial2xsbug are not: the tests speak the
# xsbug protocol themselves (test/firmware/moddable.ts).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:-}"

src="${IOTKX_MODDABLE_SRC:-}"
if [ -z "$src" ]; then
  for c in "$here/../shared/moddable-sdk" "/work/shared/moddable-sdk"; do
    if [ -d "$c/xs" ]; then src="$(cd "$c" && pwd)"; break; fi
  done
fi
if [ -z "$src" ] || [ ! -d "$src/xs" ]; then
  echo "moddable-setup: Moddable SDK source not found (set IOTKX_MODDABLE_SRC)" >&2
  exit 2
fi

hash="$(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
dest="${IOTKX_MODDABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iotkx/moddable-$hash}"
bin="$dest/build/bin/lin/release"

built() { [ -f "$dest/.iotkx-built" ] && [ -x "$bin/mcconfig" ] && [ -x "$bin/xsl" ] && [ -x "$bin/mcsim" ]; }

emit() {
  if [ "$mode" = "--env" ]; then
    printf 'export MODDABLE=%q\nexport PATH=%q:"$PATH"\n' "$dest" "$bin"
  else
    echo "$dest"
  fi
}

if built; then emit; exit 0; fi
if [ "$mode" = "--check" ]; then echo "moddable-setup: not built yet ($dest)" >&2; exit 1; fi

for p in pkg-config gcc make; do
  command -v "$p" >/dev/null || { echo "moddable-setup: $p missing (apt-get install -y libgtk-3-dev xvfb xauth build-essential)" >&2; exit 2; }
done
pkg-config --exists gtk+-3.0 || { echo "moddable-setup: GTK 3 headers missing (apt-get install -y libgtk-3-dev)" >&2; exit 2; }

# Build in a private copy, then move it into place, so an interrupted build never looks finished.
mkdir -p "$(dirname "$dest")"
work="$(mktemp -d "$(dirname "$dest")/.build-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
export MODDABLE="$work" XS_DIR="$work/xs" BUILD_DIR="$work/build"
export PATH="$work/build/bin/lin/release:$PATH"
jobs="$(nproc 2>/dev/null || echo 2)"
{
  cd "$work/build/makefiles/lin"
  make -j"$jobs" GOAL=release -f "$work/xs/makefiles/lin/xsc.mk"
  make -j"$jobs" GOAL=release -f "$work/xs/makefiles/lin/xsid.mk"
  make -j"$jobs" GOAL=release -f "$work/xs/makefiles/lin/xsl.mk"
  make -j"$jobs" GOAL=release -f tools.mk
  "$work/build/bin/lin/release/mcconfig" -m -p x-lin "$work/tools/mcsim/manifest.json"
} >&2
# mcconfig writes absolute paths into generated makefiles; the SDK is used from $dest, so drop build/tmp.
rm -rf "$work/build/tmp"
touch "$work/.iotkx-built"
rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
emit

#!/usr/bin/env bash
# Builds the postoffice .deb and .rpm into OUTDIR (default ./dist) with
# nfpm, from a static build of the current tree:
#
#   packaging/build-packages.sh [OUTDIR]
#
# PKG_VERSION (default 0.0.0) and PKG_ARCH (default: go env GOARCH) name
# the packages; NFPM overrides how nfpm is run (default: go run of the
# pinned version through the Go module proxy). Nothing is written outside
# OUTDIR but a temporary staging directory, removed at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
nfpm_version=v2.48.0
read -r -a nfpm <<<"${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@$nfpm_version}"
export PKG_VERSION=${PKG_VERSION:-0.0.0}
export PKG_ARCH=${PKG_ARCH:-$(go env GOARCH)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cd "$repo"
mkdir -p "$stage/dist"
CGO_ENABLED=0 GOARCH=$PKG_ARCH go build -trimpath -ldflags='-s -w' -o "$stage/dist/postoffice" ./cmd/postoffice
cp -r README.md docs packaging contrib "$stage/"
cd "$stage"
for p in deb rpm; do
	"${nfpm[@]}" pkg --config packaging/nfpm.yaml --packager "$p" --target "$out/"
done
ls -l "$out"

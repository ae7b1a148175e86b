#!/usr/bin/env bash
# Builds lapor-ferretdb: the FerretDB module pinned in go.mod, from the Go module
# proxy, with the fixes in patches/ applied to a private copy of its source.
# Usage: ferretdb/build.sh OUTPUT
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$1")
work=$here/../.cache/ferretdb-build
src=$work/FerretDB

cd "$here"
go mod download github.com/FerretDB/FerretDB
upstream=$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)

rm -rf "$work"
mkdir -p "$src"
cp -R "$upstream/." "$src/"
chmod -R u+w "$src"  # the module cache is read-only
for fix in patches/*.patch; do
    patch --quiet --forward -p1 -d "$src" < "$fix"
done

# go.mod stays untouched: the build uses a copy that points at the patched source.
cp go.mod go.sum "$work/"
go mod edit -modfile="$work/go.mod" -replace "github.com/FerretDB/FerretDB=$src"
go build -modfile="$work/go.mod" -o "$out" .
echo "built $out with $(ls patches/*.patch | wc -l) patch(es) on $(go list -m -f '{{.Version}}' github.com/FerretDB/FerretDB)"

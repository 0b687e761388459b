#!/usr/bin/env bash
# Builds the release binaries benches/device.sh runs (synth, bench_decode, the
# matvec bench) and copies them, gzipped, into DEST (default .dev/bin, kept out
# of git by .git/info/exclude), with COMMIT holding the commit they came from.
#
#   benches/build_for_device.sh [DEST]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
DEST=${1:-.dev/bin}
exclude="$(git rev-parse --git-common-dir)/info/exclude"
if [[ $DEST == .dev/* ]] && ! grep -qx '/.dev/' "$exclude" 2>/dev/null; then
    echo '/.dev/' >>"$exclude"
fi
mkdir -p "$DEST"

# The executables' paths come from cargo's JSON messages (the target dir may be anywhere).
exes() { grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//'; }
examples=$(cargo build --release --example synth --example bench_decode --message-format=json | exes)
bench=$(cargo bench --bench matvec --no-run --message-format=json | exes)
for exe in $examples $bench; do
    name=$(basename "$exe")
    name=${name%%-*} # matvec-<hash> -> matvec
    gzip -9 -c "$exe" >"$DEST/$name.gz"
    echo "$DEST/$name.gz: $(du -h "$DEST/$name.gz" | cut -f1) (from $exe)"
done
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- src shaders examples benches Cargo.toml || commit="$commit-dirty"
echo "$commit" >"$DEST/COMMIT"
echo "commit $commit; run on the GPU machine: bash benches/device.sh $DEST"

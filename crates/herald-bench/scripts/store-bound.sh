#!/bin/bash
# What herald's SQLite store costs, as bounds: alternates scenario (a) between
#   disk   the release build as it is (the database under $TMPDIR, on disk);
#   tmpfs  the same build with the database on /dev/shm (syncs and page writes cost
#          next to nothing; SQLite's own work stays);
#   zero   a build of the commit checked out (HEAD) with zero-store.patch applied,
#          run with BOUND_ZERO=1 (writes pass through the writer thread, no SQL,
#          no commit);
# and prints, per run, the raw client's rate, deliveries per second, their share of
# the raw rate and herald's CPU per delivery. The zero build goes to
# target/store-bound (a full build the first time). Usage, from the repository root:
#   crates/herald-bench/scripts/store-bound.sh [ROUNDS] [MESSAGES]   # default 3 60000
set -euo pipefail
rounds=${1:-3}
messages=${2:-60000}
root=$(pwd)
work=$root/target/store-bound
cargo build --release -p herald -p herald-bench
mkdir -p "$work"
rm -rf "$work/src" "$work/disk" "$work/tmpfs" "$work/zero"
git worktree prune
git worktree add --detach "$work/src" HEAD > /dev/null
trap 'git -C "$root" worktree remove --force "$work/src"' EXIT
git -C "$work/src" apply "$root/crates/herald-bench/scripts/zero-store.patch"
(cd "$work/src" && CARGO_TARGET_DIR="$work/target" cargo build --release -p herald)
mkdir -p "$work/disk" "$work/tmpfs" "$work/zero"
cp target/release/herald target/release/herald-bench "$work/disk/"
cp target/release/herald target/release/herald-bench "$work/tmpfs/"
cp target/release/herald-bench "$work/zero/"
# herald-bench starts the `herald` next to it with a cleared environment.
cp "$work/target/release/herald" "$work/zero/herald-zero"
printf '#!/bin/sh\nBOUND_ZERO=1 exec "%s/zero/herald-zero" "$@"\n' "$work" > "$work/zero/herald"
chmod +x "$work/zero/herald"
for round in $(seq 1 "$rounds"); do
    for variant in disk tmpfs zero; do
        tmp=${TMPDIR:-/tmp}
        [ "$variant" = tmpfs ] && tmp=/dev/shm
        out=$(TMPDIR=$tmp "$work/$variant/herald-bench" --scenario sqlite --runs 1 --messages "$messages")
        raw=$(echo "$out" | sed -n 's/^raw reference client: \([0-9]*\).*/\1/p')
        row=$(echo "$out" | grep '^| (a)')
        delivered=$(echo "$row" | awk -F'|' '{print $4}' | awk '{print $1}')
        cpu=$(echo "$row" | awk -F'|' '{print $11}' | awk '{print $1}')
        awk -v r="$round" -v v="$variant" -v raw="$raw" -v d="$delivered" -v c="$cpu" -v m="$messages" \
            'BEGIN { printf "round %s %-5s raw %6d/s  delivered %6d/s  %4.1f %% of raw  herald %5.1f µs CPU per delivery\n", r, v, raw, d, 100 * d / raw, c * 1e6 / m }'
    done
done

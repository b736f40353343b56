#!/usr/bin/env bash
# A/B timing of strata builds on one tree, for optimization work (not `make bench`).
#
#   bench/ab.sh TREE REPS BIN...
#
# TREE is an existing source tree (made by mktree.py). For each rep and each
# binary (interleaved, so drift hits all alike): copy TREE (untimed), wait for
# the fs probe to settle, warm the cache, then time a first run into a fresh
# destination, a no-change run, and a run after `mktree.py mutate --change 1
# --delete 1 --add 1` of the copy. A BIN named cp or find measures `cp -a`
# (first run) or `find -printf` (all phases' floor) instead.
# Prints one line per measurement:
#   bin rep phase wall_s user_s sys_s maxrss_kib probe_us [stage times]
# Everything stays under TREE.ab (deleting it slows file creation for
# minutes); remove TREE.ab when done.
set -eu
TREE=$1 REPS=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
MKTREE=${STRATA_SHARED:-$HERE/../../shared}/bench/mktree.py
OUT=$TREE.ab
mkdir -p "$OUT"
PROBE_MAX_US=${PROBE_MAX_US:-75}
# What strata remembers of its destinations stays with the bench.
export STRATA_STATE_DIR=$OUT/state

probe_us() {
  python3 -c '
import os, sys, time
d = sys.argv[1]; os.makedirs(d)
t = time.perf_counter()
for i in range(2000):
    os.close(os.open(os.path.join(d, "p%d" % i), os.O_WRONLY | os.O_CREAT, 0o644))
print(int((time.perf_counter() - t) / 2000 * 1e6))' "$1"
}
n=0
settle() {
  local waited=0
  while :; do
    n=$((n + 1)); PROBE=$(probe_us "$OUT/probe.$$.$n")
    [ "$PROBE" -le "$PROBE_MAX_US" ] || [ $waited -ge 300 ] && return 0
    echo "  (probe ${PROBE} us, waiting)" >&2; sleep 30; waited=$((waited + 30))
  done
}
warm() {
  find "$1" -printf '%s %T@\n' >/dev/null
  find "$1" -type f -print0 | xargs -0 -r cat >/dev/null
  [ -e "${2:-}" ] && find "$2" -printf '%s %T@\n' >/dev/null
  return 0
}
measure() { # label rep phase src dest cmd...
  local label=$1 rep=$2 phase=$3 src=$4 dest=$5; shift 5
  warm "$src" "$dest"
  RUST_LOG=strata::timing=debug NO_COLOR=1 /usr/bin/time -f '%e %U %S %M' -o "$OUT/time" \
    "$@" >/dev/null 2>"$OUT/stderr" || { echo "FAILED: $*" >&2; cat "$OUT/stderr" >&2; }
  sync
  local stages
  stages=$(grep -o '[a-z]*_s=[0-9.e-]*' "$OUT/stderr" |
    awk -F= '{ printf "%s=%.3f ", $1, $2 }' || true)
  echo "$label $rep $phase $(cat "$OUT/time") $PROBE $stages"
}
for rep in $(seq 1 "$REPS"); do
  for bin in "$@"; do
    label=$(basename "$bin")
    if [ "$bin" = cp ]; then
      settle; measure cp "$rep" full "$TREE" "$OUT/cp-$rep" cp -a "$TREE" "$OUT/cp-$rep"; continue
    fi
    if [ "$bin" = find ]; then
      PROBE=0; measure find "$rep" any "$TREE" "" find "$TREE" -printf '%s %T@ %p\n'; continue
    fi
    S=$OUT/$label-$rep.src J=$OUT/$label-$rep.jobs D=$OUT/$label-$rep
    cp -a "$TREE" "$S"; sync
    mkdir -p "$J"
    printf '{"source": "%s", "destination": "%s", "track_dirs": ["."]}\n' "$S" "$D" >"$J/bench.json"
    settle
    measure "$label" "$rep" full "$S" "$D" "$bin" -q --jobs-dir "$J" run-all
    measure "$label" "$rep" nochange "$S" "$D" "$bin" -q --jobs-dir "$J" run-all
    python3 "$MKTREE" mutate "$S" --change 1 --delete 1 --add 1 --seed 1 --mtime 1735689600 >/dev/null
    sync
    measure "$label" "$rep" mutate "$S" "$D" "$bin" -q --jobs-dir "$J" run-all
  done
done

#!/usr/bin/env bash
# Replay a real tree history (a git bundle of ../shared/replay): check out
# each commit in turn (git keeps the mtimes of unchanged files), run strata,
# then restore every increment and compare it with the tree it backed up
# (content, kind, mode, mtime). Snapshots are taken with cp -a, which keeps
# symlink mtimes. A development tool, not a test: the bundles are not in
# the repository.
#
#   make build && bench/replay.sh ../shared/replay/ohmyzsh.bundle 100
set -euo pipefail
BUNDLE=$1; N=${2:-100}; S=${S:-${STRATA:-${CARGO_TARGET_DIR:-$(pwd)/target}/release/strata}}
W=/tmp/replay-$(basename "$BUNDLE" .bundle); rm -rf "$W"; mkdir -p "$W/jobs" "$W/snap"
git clone -q -b replay "$BUNDLE" "$W/src"
echo '{"source":"../src","destination":"../dest","track_dirs":["."],"exclude_dirs":[".git"]}' > "$W/jobs/r.json"
commits=$(git -C "$W/src" rev-list --reverse replay | sed -n "1,${N}p")
i=0
for c in $commits; do
  i=$((i+1))
  git -C "$W/src" checkout -q -f "$c"
  git -C "$W/src" clean -q -fdx
  rm -rf "$W/pending"; cp -a "$W/src" "$W/pending"; rm -rf "$W/pending/.git"
  out=$("$S" --jobs-dir "$W/jobs" --json run r)
  inc=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0].get("increment") or "")')
  status=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["status"])')
  [ "$status" = success ] || { echo "run $i: $status"; echo "$out"; exit 1; }
  if [ -n "$inc" ]; then
    mv "$W/pending" "$W/snap/$inc"
  fi
done
fail=0
for snap in "$W"/snap/*; do
  inc=$(basename "$snap"); rm -rf "$W/restored"
  "$S" --jobs-dir "$W/jobs" -q restore r --to "$W/restored" --at "$inc"
  if ! diff -r --no-dereference "$snap" "$W/restored" >/dev/null 2>&1; then
    echo "MISMATCH at $inc"; diff -r --no-dereference "$snap" "$W/restored" | head -5; fail=1
  fi
  # modes and mtimes too
  a=$(cd "$snap" && find . -printf '%p %y %m %T@\n' | grep -v ' d ' | sort)
  b=$(cd "$W/restored" && find . -printf '%p %y %m %T@\n' | grep -v ' d ' | sort)
  [ "$a" = "$b" ] || { echo "META MISMATCH at $inc"; diff <(echo "$a") <(echo "$b") | head -5; fail=1; }
done
"$S" --jobs-dir "$W/jobs" verify r && echo "verify ok"
echo "replayed $i commits, compared $(ls "$W/snap" | wc -l) increments, fail=$fail"

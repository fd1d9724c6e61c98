#!/usr/bin/env bash
# Runs Runnel's benchmark suite (docs/performance.md): builds the release binary, then
# `runnel bench`, which starts a broker per workload on a fresh data directory and a free
# loopback port, drives it with `runnel perf` (librdkafka), measures the disk's and loopback's
# bandwidth in the same run, and writes bench/results/<timestamp>.json and .md and the report
# section of docs/performance.md.
#
# Usage: scripts/bench.sh [--rev REV] [--no-doc] [runnel bench flags...]
#   scripts/bench.sh --quick             small sizes, a few minutes
#   scripts/bench.sh                     the issue's sizes (4 GiB runs, 10 GiB restart, larger
#                                        than memory if the disk has room): 6+ minutes, 16+ GiB
#   scripts/bench.sh --quick --profile   plus a `perf record` profile of the broker (W1, W2)
#   --rev REV   benchmark commit REV, built in a clean worktree (target/bench-src), instead of
#               the working tree (whose uncommitted changes would otherwise be measured)
#   --no-doc    leave docs/performance.md alone
#   Every other flag goes to `runnel bench` (see `runnel bench --help`: sizes, --only w1,w3, ...).
# Environment: RUNNEL_BENCH_TARGET, the cargo target directory (default target/bench, apart
# from the test builds so that the two never wait on each other's lock).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REV=""
DOC=1
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rev) REV="${2:?--rev needs a revision}"; shift 2 ;;
    --rev=*) REV="${1#--rev=}"; shift ;;
    --no-doc) DOC=0; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

TARGET="${RUNNEL_BENCH_TARGET:-$ROOT/target/bench}"
if [[ -n "$REV" ]]; then
  COMMIT="$(git rev-parse --verify "$REV^{commit}")"
  SRC="$ROOT/target/bench-src"
  if [[ -e "$SRC/.git" ]]; then
    git -C "$SRC" checkout -q --detach "$COMMIT"
  else
    rm -rf "$SRC"
    git worktree add -q --detach "$SRC" "$COMMIT"
  fi
  SOURCE="commit ${COMMIT:0:12} ($(git log -1 --format=%s "$COMMIT" | cut -c1-60)), clean checkout"
else
  SRC="$ROOT"
  COMMIT="$(git rev-parse HEAD)"
  CHANGED="$(git status --porcelain --untracked-files=all -- crates Cargo.toml Cargo.lock | wc -l)"
  SOURCE="working tree at ${COMMIT:0:12}"
  if [[ "$CHANGED" -gt 0 ]]; then
    SOURCE="$SOURCE with $CHANGED uncommitted file(s) under crates/ or Cargo.*"
  fi
fi
SOURCE="$SOURCE; $(rustc --version)"

printf '==> cargo build --release -p runnel-cli (in %s, target %s)\n' "$SRC" "$TARGET" >&2
(cd "$SRC" && CARGO_TARGET_DIR="$TARGET" cargo build --release -p runnel-cli)

DOC_ARGS=()
if [[ $DOC -eq 1 ]]; then DOC_ARGS=(--doc "$ROOT/docs/performance.md"); fi
exec "$TARGET/release/runnel" bench --out "$ROOT/bench/results" --source "$SOURCE" \
  "${DOC_ARGS[@]}" "${ARGS[@]}"

#!/usr/bin/env bash
# Runs Runnel's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) for a short, bounded time each.
#
# Usage: scripts/fuzz.sh [seconds_per_target] [target...]     (default: 20 s, all targets)
#
# Steps:
#   1. installs cargo-fuzz if missing (cargo install --locked, pinned version);
#   2. builds every target (stable toolchain with RUSTC_BOOTSTRAP=1; libFuzzer without
#      AddressSanitizer by default, see FUZZ_SANITIZER; debug assertions and overflow checks on);
#   3. replays every input under fuzz/regressions/<target>/ (each must pass);
#   4. fuzzes each target for the given time from its seed corpus (fuzz/corpus/<target>/,
#      committed) and its working corpus (fuzz/target/corpus-work/<target>/, kept between runs,
#      so coverage accumulates where fuzz/target is cached), FUZZ_JOBS targets at a time.
# Exits non-zero if any regression input or any fuzzing run crashes, aborts, runs out of memory
# (-rss_limit_mb) or times out on one input. A finding is left in fuzz/artifacts/<target>/;
# the libFuzzer log of each run is in fuzz/target/fuzz-logs/<target>.log.
#
# Environment:
#   FUZZ_JOBS=n          targets fuzzed in parallel (default 2)
#   FUZZ_SANITIZER=address  build with AddressSanitizer (default none: ASAN makes the targets
#                        5-13x slower, request_decode most, as it poisons shadow memory for the
#                        codecs' large pre-allocations; the code under test is safe Rust).
#                        Built in fuzz/target/asan, so both builds stay cached.
#   FUZZ_RSS_MB=n        libFuzzer -rss_limit_mb (default 4096)
#   FUZZ_FRESH=1         start from the seed corpus only (empty working corpus)
#   FUZZ_ARGS="..."      extra libFuzzer arguments (e.g. "-seed=1 -max_len=8192")
#   RUNNEL_FUZZ_RELAX=a,b  known findings the targets tolerate (see fuzz/README.md); unset by
#                        default, so an unfixed known finding fails the run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
CARGO_FUZZ_VERSION="0.13.2"
ALL_TARGETS=(request_decode batch_validate segment_recovery index_files)

die() { printf 'ERROR: %s\n' "$*" >&2; exit 2; }
log() { printf '\n==> %s\n' "$*"; }

SECS="${1:-20}"
[[ $SECS =~ ^[0-9]+$ && $SECS -gt 0 ]] || die "seconds_per_target must be a positive integer, got '$SECS'"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [[ -f "$FUZZ/fuzz_targets/$t.rs" ]] || die "unknown fuzz target '$t' (have: ${ALL_TARGETS[*]})"
done
JOBS="${FUZZ_JOBS:-2}"
SANITIZER="${FUZZ_SANITIZER:-none}"
RSS_MB="${FUZZ_RSS_MB:-4096}"
T0=$SECONDS

# ------------------------------------------------------------------ 1. cargo-fuzz
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked)"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# ------------------------------------------------------------------ 2. build
# cargo-fuzz needs nightly flags (-Zsanitizer, sancov passes); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. -a: debug assertions and overflow checks, as in the tests.
# 16 codegen units: a much faster build for slightly slower targets.
export RUSTC_BOOTSTRAP=1
BUILD_FLAGS=(-a --codegen-units 16 -s "$SANITIZER" --fuzz-dir "$FUZZ")
TARGET_DIR="$FUZZ/target"
if [[ $SANITIZER != none ]]; then
  TARGET_DIR="$FUZZ/target/$SANITIZER"
  BUILD_FLAGS+=(--target-dir "$TARGET_DIR")
fi
log "building fuzz targets (sanitizer: $SANITIZER)"
t_build=$SECONDS
cargo fuzz build "${BUILD_FLAGS[@]}"
BUILD_SECS=$((SECONDS - t_build))
HOST="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="$TARGET_DIR/$HOST/release"
LOGS="$FUZZ/target/fuzz-logs"
mkdir -p "$LOGS"

# As cargo fuzz run sets it (the sanitizer runtime is linked into each binary).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
FAILED=0
declare -a SUMMARY=()

# ------------------------------------------------------------------ 3. regressions
for t in "${TARGETS[@]}"; do
  dir="$FUZZ/regressions/$t"
  [[ -d $dir ]] || continue
  mapfile -t inputs < <(find "$dir" -type f ! -name '*.md' | sort)
  [[ ${#inputs[@]} -gt 0 ]] || continue
  log "$t: replaying ${#inputs[@]} regression input(s)"
  for input in "${inputs[@]}"; do
    out="$LOGS/$t.regression.log"
    if "$BIN_DIR/$t" -rss_limit_mb="$RSS_MB" -timeout=30 "$input" >"$out" 2>&1; then
      printf '  ok      %s\n' "${input#"$ROOT/"}"
    else
      printf '  FAILED  %s\n' "${input#"$ROOT/"}"
      grep -m1 -A2 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$out" | sed 's/^/          /' || true
      SUMMARY+=("FAILED  $t regression ${input#"$ROOT/"}")
      FAILED=1
    fi
  done
done

# ------------------------------------------------------------------ 4. fuzz
run_target() {  # run_target TARGET: fuzzes for $SECS, output to $LOGS/TARGET.log
  local t="$1" work="$FUZZ/target/corpus-work/$t"
  [[ ${FUZZ_FRESH:-0} == 1 ]] && rm -rf "$work"
  mkdir -p "$work" "$FUZZ/artifacts/$t"
  # shellcheck disable=SC2086
  "$BIN_DIR/$t" \
    -max_total_time="$SECS" -rss_limit_mb="$RSS_MB" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" ${FUZZ_ARGS:-} \
    "$work" "$FUZZ/corpus/$t" >"$LOGS/$t.log" 2>&1
}

report() {  # report TARGET RC
  local t="$1" rc="$2" f="$LOGS/$1.log" execs cov ft corp rate last
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$f" | tail -1)"
  last="$(grep -E '^#[0-9]+' "$f" | tail -1 || true)"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
  corp="$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$last")"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$f" | tail -1)"
  local line
  line="$(printf '%-17s %10s execs %7s/s  cov %6s  ft %6s  corpus %s' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")"
  if [[ $rc -eq 0 ]]; then
    SUMMARY+=("ok      $line")
    printf '  done    %s\n' "$line"
  else
    SUMMARY+=("FAILED  $line (exit $rc)")
    FAILED=1
    printf '\n---- %s: finding (exit %s), from %s\n' "$t" "$rc" "${f#"$ROOT/"}"
    grep -m1 -A3 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$f" || true
    grep -m1 -E "Test unit written to|artifact_prefix" "$f" || true
  fi
}

log "fuzzing ${TARGETS[*]} for ${SECS}s each, $JOBS at a time"
t_fuzz=$SECONDS
declare -A PID_TARGET=()
pending=("${TARGETS[@]}")
while [[ ${#pending[@]} -gt 0 || ${#PID_TARGET[@]} -gt 0 ]]; do
  while [[ ${#pending[@]} -gt 0 && ${#PID_TARGET[@]} -lt $JOBS ]]; do
    t="${pending[0]}"
    pending=("${pending[@]:1}")
    run_target "$t" &
    PID_TARGET[$!]="$t"
  done
  rc=0
  wait -n -p done_pid "${!PID_TARGET[@]}" || rc=$?
  t="${PID_TARGET[$done_pid]}"
  unset "PID_TARGET[$done_pid]"
  report "$t" "$rc"
done
FUZZ_SECS=$((SECONDS - t_fuzz))

printf '\n================ scripts/fuzz.sh summary ================\n'
for s in "${SUMMARY[@]}"; do printf '  %s\n' "$s"; done
printf '  build %ss, fuzzing %ss, total %ss\n' "$BUILD_SECS" "$FUZZ_SECS" "$((SECONDS - T0))"
if [[ $FAILED -eq 0 ]]; then
  printf 'RESULT: no crash\n'
else
  printf 'RESULT: FAILED (findings in fuzz/artifacts/, logs in fuzz/target/fuzz-logs/)\n'
fi
exit "$FAILED"

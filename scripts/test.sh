#!/usr/bin/env bash
# Runs all of Runnel's tests: the Rust workspace tests, a short run of the fuzz targets, then the
# Kafka-compatibility suites that drive the real `runnel` binary with real clients
# (confluent-kafka/librdkafka, kafka-python, aiokafka, kcat, KafkaJS).
#
# Installs what the suites need, idempotently (fast when already installed):
#   - kcat (apt) when missing,
#   - .venv with tests/compat/requirements.txt (pinned),
#   - .venv-quix with tests/compat/quix/requirements.txt (Quix Streams pins an older
#     confluent-kafka, so it gets its own virtualenv; the exactly-once test runs it),
#   - tests/compat/node/node_modules from package-lock.json (npm ci).
#
# Usage: scripts/test.sh [--strict] [all|rust|compat|python|node|fuzz]...   (default: all)
#   all and rust include fuzz: scripts/fuzz.sh, a short run of every fuzz target (regression
#   inputs replayed, then FUZZ_SECONDS=12 seconds of fuzzing each; see fuzz/README.md).
#   --strict: tests listed in tests/compat/known_gaps.txt count as ordinary tests (they fail).
#   extra pytest arguments: PYTEST_ADDOPTS="-k kcat -x" scripts/test.sh python
#   RUNNEL_BIN=/path/to/runnel uses that binary for the compat suites instead of target/debug/runnel.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMPAT="tests/compat"
NODE_DIR="$COMPAT/node"
VENV="$ROOT/.venv"
REQS="$COMPAT/requirements.txt"
QUIX_VENV="$ROOT/.venv-quix"
QUIX_REQS="$COMPAT/quix/requirements.txt"

log() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- which suites
want_rust=0 want_python=0 want_node=0 want_fuzz=0
suites=0
for arg in "$@"; do [[ $arg == -* ]] || suites=1; done
[[ $suites -eq 1 ]] || set -- "$@" all
for arg in "$@"; do
  case "$arg" in
    all) want_rust=1 want_python=1 want_node=1 want_fuzz=1 ;;
    rust) want_rust=1 want_fuzz=1 ;;
    fuzz) want_fuzz=1 ;;
    compat) want_python=1 want_node=1 ;;
    python|pytest) want_python=1 ;;
    node|kafkajs) want_node=1 ;;
    --strict) export RUNNEL_COMPAT_IGNORE_KNOWN_GAPS=1 ;;
    -h|--help) sed -n '2,/^set -euo pipefail$/{/^#/p}' "$0"; exit 0 ;;
    *) die "unknown suite '$arg' (expected all, rust, compat, python, node or fuzz)" ;;
  esac
done

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# ---------------------------------------------------------------- setup: tools the suites use
setup_kcat() {
  if command -v kcat >/dev/null 2>&1; then return; fi
  log "installing kcat (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  command -v kcat >/dev/null 2>&1 || die "kcat still missing after apt-get install"
}

setup_venv() {  # setup_venv DIR REQUIREMENTS
  local venv="$1" reqs="$2"
  local stamp="$venv/.runnel-requirements.sha256" want
  want="$(sha "$reqs")"
  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtualenv $venv"
    python3 -m venv "$venv"
  fi
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  log "installing Python test dependencies ($reqs)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
  echo "$want" >"$stamp"
}

setup_node() {
  local stamp="$NODE_DIR/node_modules/.runnel-lock.sha256" want
  command -v node >/dev/null 2>&1 || die "node is not installed"
  want="$(sha "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  log "installing Node test dependencies (npm ci in $NODE_DIR)"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- steps
declare -a RESULTS=()
FAILED=0
run_step() {  # run_step NAME CMD...: runs, records the outcome, never aborts the script
  local name="$1"; shift
  local t0=$SECONDS rc=0
  log "$name: $*"
  "$@" || rc=$?
  local took=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then
    RESULTS+=("ok      $name (${took}s)")
  else
    RESULTS+=("FAILED  $name (exit $rc, ${took}s)")
    FAILED=1
  fi
  return 0
}

summary() {
  printf '\n================ scripts/test.sh summary ================\n'
  local r
  for r in "${RESULTS[@]}"; do printf '  %s\n' "$r"; done
  if [[ $FAILED -eq 0 ]]; then printf 'RESULT: all steps succeeded\n'; else printf 'RESULT: some steps FAILED\n'; fi
}

pytest_compat() {
  # pytest exits 5 when it collected no test: that is a failure here.
  "$VENV/bin/python" -m pytest "$COMPAT"
}

node_compat() {
  node --test "$NODE_DIR/"
}

# Setup failures (installs, build) stop everything: nothing after them can be trusted.
if [[ $want_python -eq 1 ]]; then
  setup_kcat
  setup_venv "$VENV" "$REQS"
  setup_venv "$QUIX_VENV" "$QUIX_REQS"
fi
if [[ $want_node -eq 1 ]]; then setup_node; fi

if [[ $want_rust -eq 1 ]]; then
  log "cargo build --workspace --all-targets"
  cargo build --workspace --all-targets || { RESULTS+=("FAILED  cargo build --workspace --all-targets"); FAILED=1; summary; exit 1; }
  RESULTS+=("ok      cargo build --workspace --all-targets")
  run_step "cargo test --workspace" cargo test --workspace --no-fail-fast
elif [[ $want_python -eq 1 || $want_node -eq 1 ]]; then
  if [[ -z "${RUNNEL_BIN:-}" ]]; then
    log "cargo build -p runnel-cli"
    cargo build -p runnel-cli || { RESULTS+=("FAILED  cargo build -p runnel-cli"); FAILED=1; summary; exit 1; }
    RESULTS+=("ok      cargo build -p runnel-cli")
  fi
fi

# The fuzz targets are their own workspace (fuzz/target): installs cargo-fuzz if missing, builds
# them (about 3 minutes from nothing on 2 cores), replays fuzz/regressions/, fuzzes each target.
FUZZ_SECONDS="${FUZZ_SECONDS:-12}"
if [[ $want_fuzz -eq 1 ]]; then run_step "scripts/fuzz.sh $FUZZ_SECONDS" scripts/fuzz.sh "$FUZZ_SECONDS"; fi

export PYTHONDONTWRITEBYTECODE=1
if [[ $want_python -eq 1 ]]; then run_step "pytest $COMPAT" pytest_compat; fi
if [[ $want_node -eq 1 ]]; then run_step "node --test $NODE_DIR/" node_compat; fi

summary
exit "$FAILED"

#!/usr/bin/env bash
# Benchmark `sluice check` (built-in policy pack + risk + approvals + report, a fresh process
# per run) against Checkov on the same generated 10,000-change plan JSON.
#
# Usage: scripts/bench-check.sh [CHANGES] [RUNS]
#   SLUICE=path/to/sluice   the binary to measure (default: target/release/sluice; built if missing)
#   VENV=dir                where Checkov is installed (default: target/bench-venv)
#   CHECKOV_RUNS=N          Checkov runs (default 1: a run takes minutes)
#
# Checkov is installed from PyPI into a virtual environment (python3 -m venv + pip). Both tools
# read the same file; the ratio is Checkov's median over sluice's median. Checkov runs its
# whole Terraform-plan policy set (it has no switch for "sluice's rules only"), sluice its
# built-in pack, so the ratio compares "a policy gate over this plan" end to end.
set -euo pipefail

CHANGES="${1:-10000}"
RUNS="${2:-5}"
CHECKOV_RUNS="${CHECKOV_RUNS:-1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SLUICE="${SLUICE:-$ROOT/target/release/sluice}"
VENV="${VENV:-$ROOT/target/bench-venv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [[ ! -x "$SLUICE" ]]; then
  echo "building sluice (release) ..." >&2
  (cd "$ROOT" && cargo build --release -p sluice-cli >&2)
fi

# 1. sluice: generate the plans and measure (fresh process per run, median, peak RSS).
"$SLUICE" bench check --changes "$CHANGES" --runs "$RUNS" --keep "$WORK" --format json >"$WORK/sluice.json"
python3 - "$WORK/sluice.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["runs"]:
    verdict = "met" if r["meets_target"] else "MISSED"
    print(f"sluice check {r['changes']:>6} changes: median {r['wall']['median_ms']:.1f} ms, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB, target {verdict}")
PY
PLAN="$WORK/plan-$CHANGES.json"
SLUICE_MS="$(python3 -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1]))["runs"] if x["changes"]==int(sys.argv[2])][0]; print(r["wall"]["median_ms"])' "$WORK/sluice.json" "$CHANGES")"

# 2. Checkov from PyPI into a venv.
if [[ ! -x "$VENV/bin/checkov" ]]; then
  echo "installing checkov into $VENV ..." >&2
  python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check checkov >&2; then
    echo "checkov: pip install failed; sluice median ${SLUICE_MS} ms, no ratio" >&2
    exit 1
  fi
fi
CHECKOV_VERSION="$("$VENV/bin/checkov" --version 2>/dev/null || echo unknown)"

# 3. Checkov on the same file (wall time per run; exit 1 means "failed checks", which is normal).
samples=()
for _ in $(seq 1 "$CHECKOV_RUNS"); do
  start=$(date +%s%N)
  set +e
  "$VENV/bin/checkov" -f "$PLAN" --framework terraform_plan --quiet --compact \
    --output json >"$WORK/checkov.json" 2>"$WORK/checkov.err"
  code=$?
  set -e
  end=$(date +%s%N)
  if [[ $code -ne 0 && $code -ne 1 ]]; then
    echo "checkov exited with $code:" >&2
    tail -5 "$WORK/checkov.err" >&2
    exit 1
  fi
  samples+=("$(( (end - start) / 1000000 ))")
done
CHECKOV_MS="$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
FAILED="$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
d=d[0] if isinstance(d,list) else d
print(d.get("summary",{}).get("failed","?"))' "$WORK/checkov.json" 2>/dev/null || echo "?")"

echo
echo "plan: $CHANGES resource changes ($(stat -c %s "$PLAN") bytes)"
printf "sluice check   median %.0f ms over %s runs\n" "$SLUICE_MS" "$RUNS"
echo "checkov ${CHECKOV_VERSION}  median ${CHECKOV_MS} ms over $CHECKOV_RUNS run(s), ${FAILED} failed checks"
python3 -c 'import sys; s,c=float(sys.argv[1]),float(sys.argv[2]); print(f"ratio checkov/sluice: {c/s:.1f}x")' "$SLUICE_MS" "$CHECKOV_MS"

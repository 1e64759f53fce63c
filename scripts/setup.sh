#!/usr/bin/env bash
# Idempotent setup of the venv route (no ROS install needed): .venv with pinned torch first,
# then requirements.txt, the package in editable mode, and the msg/ interfaces built with cmake
# against the ROS 2 Kilted wheels. Re-running is fast: each step is skipped when its inputs are
# unchanged (stamps under .venv/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
VENV="$ROOT/.venv"
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"

stamp_ok() { [ -f "$VENV/.stamp-$1" ] && [ "$(cat "$VENV/.stamp-$1")" = "$2" ]; }
stamp() { echo "$2" > "$VENV/.stamp-$1"; }
t0=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
if ! stamp_ok torch "$TORCH_PINS"; then
  # torch before anything else, so no other package pulls a different torch
  echo "[setup] installing $TORCH_PINS (about a minute on the build machines, 5.5 GB)"
  "$VENV/bin/pip" install -q --disable-pip-version-check $TORCH_PINS
  stamp torch "$TORCH_PINS"
fi
REQ_HASH="$(sha256sum requirements.txt | cut -d' ' -f1)"
if ! stamp_ok req "$REQ_HASH"; then
  echo "[setup] installing requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt $TORCH_PINS
  stamp req "$REQ_HASH"
fi
SETUP_HASH="$(sha256sum setup.py | cut -d' ' -f1)"
if ! stamp_ok pkg "$SETUP_HASH"; then
  echo "[setup] installing semcomm_ros (editable)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  stamp pkg "$SETUP_HASH"
fi
if [ -f scripts/build_interfaces.sh ]; then
  bash scripts/build_interfaces.sh
fi
echo "[setup] ready in $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# Set up napari-histostain in ./.venv: system libraries for Qt under Xvfb (when root), a virtual
# environment, the pinned CPU build of torch FIRST (an unpinned torch pulls a multi-GB CUDA build),
# then the package itself (non-editable, as napari's plugin manager would) with its test extras.
#   bash scripts/setup.sh          as a user and in CI
#   bash scripts/setup.sh --dev    for development: an editable install (edits to napari_histostain/
#                                  and training/ are seen without reinstalling)
set -euo pipefail
EDITABLE=""
[ "${1:-}" = "--dev" ] && EDITABLE="-e"
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  if ! command -v xvfb-run >/dev/null || ! dpkg -s libxcb-cursor0 >/dev/null 2>&1; then
    echo "== installing Xvfb and Qt system libraries"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth libxkbcommon-x11-0 \
      libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
      libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 \
      libgl1 libegl1 libglib2.0-0 >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "== installing torch==${TORCH_VERSION} (CPU) first"
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
echo "== installing napari-histostain[testing] ${EDITABLE:+(editable)}"
EXTRAS="testing"
[ -n "$EDITABLE" ] && EXTRAS="testing,dev"
.venv/bin/python -m pip install -q $EDITABLE ".[$EXTRAS]"
.venv/bin/python - <<'PY'
import torch, napari_histostain
print(f"torch {torch.__version__}, napari-histostain {napari_histostain.__version__}: ready")
PY

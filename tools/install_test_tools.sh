#!/usr/bin/env bash
# System tools the test suite needs beyond the venv, installed from Debian's packages when missing:
#   qemu-x86_64 (qemu-user)  runs onnxruntime on an emulated x86 CPU without VNNI / AVX-512 (tests/export/
#                            test_int8_portability.py): the only way to exercise that int8 kernel path on a VNNI host.
# Idempotent; needs root for apt-get (CI and the dev machines run as root). Without root it says what to install.
set -euo pipefail

missing=()
command -v qemu-x86_64 >/dev/null || missing+=(qemu-user)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "install_test_tools.sh: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
    exit 0  # the tests that need them then say so (and fail under CI=true)
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

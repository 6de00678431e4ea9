#!/usr/bin/env bash
# The Debian packages the tests need: slurm-wlm and munge (the tests marked `slurm` start a one-node
# Slurm, tests/conftest.py) and chromium (the test marked `browser`). As root, installs the missing
# ones; otherwise says what to install (those tests then skip, with the same command as the reason).
set -euo pipefail
missing=()
command -v slurmctld >/dev/null && command -v slurmd >/dev/null || missing+=(slurm-wlm)
command -v munged >/dev/null || missing+=(munge)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "note: the slurm and browser tests will skip; to run them: sudo apt-get install ${missing[*]}" >&2
    exit 0
fi
echo "installing ${missing[*]} (apt-get, once)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

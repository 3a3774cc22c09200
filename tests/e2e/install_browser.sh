#!/usr/bin/env bash
# What the real-browser test needs on a fresh Debian machine: Chromium from Debian's packages.
# (Playwright's own browser download is not possible offline; the test launches /usr/bin/chromium.)
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core > /dev/null
/usr/bin/chromium --version

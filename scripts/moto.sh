#!/usr/bin/env bash
# Installs the AWS emulator the iras-aws tests start on localhost (moto server) into
# .venv-test at the repo root. Idempotent: a no-op in well under a second once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
venv=.venv-test

installed_version() {
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true
}

if [ -x "$venv/bin/moto_server" ] && [ "$(installed_version)" = "$MOTO_VERSION" ]; then
  exit 0
fi

# A half-made venv (interrupted install, other Python) is rebuilt rather than patched.
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
"$venv/bin/moto_server" --help >/dev/null
echo "moto ${MOTO_VERSION} installed in ${venv}"

#!/usr/bin/env bash
# Static checks of the AWS deployment shape: the SAM template (cfn-lint, `sam validate --lint`)
# and the state machine (statelint, since cfn-lint does not look inside DefinitionUri files).
# Installs the pinned checkers into .venv-test at the repo root: a quick no-op once present.
# Needs no AWS account and no network once installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_LINT_VERSION=1.58.0
SAM_CLI_VERSION=1.170.0
STATELINT_VERSION=3.1.0
venv=.venv-test

version_of() {
  "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}

installed() {
  [ -x "$venv/bin/cfn-lint" ] && [ -x "$venv/bin/sam" ] && [ -x "$venv/bin/statelint" ] &&
    [ "$(version_of cfn-lint)" = "$CFN_LINT_VERSION" ] &&
    [ "$(version_of aws-sam-cli)" = "$SAM_CLI_VERSION" ] &&
    [ "$(version_of statelint)" = "$STATELINT_VERSION" ]
}

if ! installed; then
  # A half-made venv (interrupted install, other Python) is rebuilt rather than patched.
  if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "cfn-lint==${CFN_LINT_VERSION}" "aws-sam-cli==${SAM_CLI_VERSION}" "statelint==${STATELINT_VERSION}"
  installed || { echo "validate-aws: the checkers did not install as pinned" >&2; exit 1; }
fi

# Offline and quiet: no telemetry, no update check, no credentials needed.
export SAM_CLI_TELEMETRY=0
export SAM_CLI_DISABLE_UPDATE_CHECK=1
export AWS_EC2_METADATA_DISABLED=true

failed=0
check() {
  local name=$1
  shift
  printf '==> %s\n' "$name"
  if "$@"; then
    printf '    ok\n'
  else
    printf '    FAILED: %s\n' "$name" >&2
    failed=1
  fi
}

check "cfn-lint template.yaml" "$venv/bin/cfn-lint" template.yaml
check "sam validate --lint" "$venv/bin/sam" validate --lint --region us-east-1 --template-file template.yaml
check "statelint statemachine.asl.json" "$venv/bin/statelint" statemachine.asl.json

if [ "$failed" -ne 0 ]; then
  echo "validate-aws: errors above" >&2
  exit 1
fi
echo "validate-aws: template.yaml and statemachine.asl.json are valid"

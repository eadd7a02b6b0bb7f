#!/usr/bin/env bash
# The lines the workspace keeps (README, "Layout"): the Step Functions engine knows nothing of
# IRAS or of transports, and core knows no SDK, HTTP stack or database. Fails naming the crate
# that crossed a line, and the path that brought it in.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
# crate, then an extended regex of the packages it must never depend on (normal dependencies).
check() {
  local crate=$1 forbidden=$2 why=$3
  local tree found
  # A tree that cannot be read is a failure, never a pass.
  tree=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' --locked --offline) || {
    echo "cannot read the dependency tree of $crate"
    fail=1
    return
  }
  found=$(echo "$tree" | awk '{print $1}' | sort -u | grep -E "^(${forbidden})$" || true)
  if [ -n "$found" ]; then
    fail=1
    echo "dependency line crossed: $crate must not depend on $(echo "$found" | tr '\n' ' ')($why)"
    for f in $found; do
      cargo tree -p "$crate" -e normal --invert "$f" --locked --offline 2>/dev/null | head -12
    done
  fi
}

sdk_http='aws-config|aws-sdk-[a-z0-9-]+|aws-smithy-runtime|reqwest|hyper|axum|lambda_runtime|lambda_http|rusqlite|tower'
check sfn-local "iras-[a-z-]+|clap|$(echo "$sdk_http" | sed 's/|rusqlite//')" "the engine is not IRAS's and is no HTTP server"
check iras-core "$sdk_http" "core does no I/O: adapters live in their own crates"
check iras-scenarios "$sdk_http" "scenarios are files and data, nothing more"

# Each function links what its stage uses (iras-lambda's features, enabled in its Cargo.toml).
# `cargo tree -p` resolves one function's features alone, as its own build does.
llm='iras-llm|aws-sdk-bedrockruntime'
evidence='aws-sdk-cloudwatch|aws-sdk-cloudwatchlogs|aws-sdk-ecs|aws-sdk-codedeploy'
executors='aws-sdk-lambda|aws-sdk-autoscaling'
sfn='aws-sdk-sfn'
events='aws-sdk-eventbridge'
http='iras-http|lambda_http'
check iras-fn-triage "$evidence|$executors|$sfn|$events|$http|iras-intake|iras-adapters" "triage calls the store and the analyst"
check iras-fn-gather-context "$llm|$executors|$sfn|$events|$http" "gather-context reads evidence"
check iras-fn-rca "$evidence|$executors|$sfn|$events|$http|iras-adapters" "rca calls the analyst"
check iras-fn-plan "$evidence|$executors|$sfn|$events|$http|iras-adapters" "plan calls the analyst"
check iras-fn-request-approval "$llm|$evidence|$executors|$sfn|$http" "request-approval posts to Slack"
check iras-fn-remediate "$llm|aws-sdk-cloudwatch|aws-sdk-cloudwatchlogs|$sfn|$http" "remediate runs the executor"
check iras-fn-verify "$llm|$executors|$sfn|$events|$http" "verify reads evidence"
check iras-fn-escalate "$llm|$evidence|$executors|$sfn|$http" "escalate pages and posts"
check iras-fn-postmortem "$evidence|$executors|$sfn|$http" "postmortem calls the analyst and the pager"
check iras-fn-ingest "$llm|$evidence|$executors|$http|iras-adapters" "ingest reads alerts and starts pipelines"
check iras-fn-api "$llm|$evidence|$executors" "api serves the webhooks and the incident API"
check iras-fn-approval-callback "$llm|$evidence|$executors|$events" "approval-callback completes approvals"

[ "$fail" -eq 0 ] && echo "dependency lines kept (sfn-local, iras-core, iras-scenarios, each function)"
exit "$fail"

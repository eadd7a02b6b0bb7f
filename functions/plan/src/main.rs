//! Plan: the remediation plan, checked against the remediation policy.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::Plan).await
}

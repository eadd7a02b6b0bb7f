//! Plan: the remediation plan, checked against the remediation policy.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let stage = iras_lambda::Stage::Plan;
    let deps = iras_lambda::deps_from_env(stage.into()).await?;
    iras_lambda::run_stage(&deps, stage).await
}

//! Remediate: applies an approved plan step by step, rolling back on failure.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let stage = iras_lambda::Stage::Remediate;
    let deps = iras_lambda::deps_from_env(stage.into()).await?;
    iras_lambda::run_stage(&deps, stage).await
}

//! Triage: severity, affected services and the approval window.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let stage = iras_lambda::Stage::Triage;
    let deps = iras_lambda::deps_from_env(stage.into()).await?;
    iras_lambda::run_stage(&deps, stage).await
}

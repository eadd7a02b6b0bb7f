//! Escalate: pages a person with the full context.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let stage = iras_lambda::Stage::Escalate;
    let deps = iras_lambda::deps_from_env(stage.into()).await?;
    iras_lambda::run_stage(&deps, stage).await
}

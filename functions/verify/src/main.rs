//! Verify: reads the symptom series again after the plan is applied and says whether they recovered.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let stage = iras_lambda::Stage::Verify;
    let deps = iras_lambda::deps_from_env(stage.into()).await?;
    iras_lambda::run_stage(&deps, stage).await
}

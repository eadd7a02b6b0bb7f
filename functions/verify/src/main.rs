//! Verify: reads the symptom series again after the plan is applied and says whether they recovered.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::Verify).await
}

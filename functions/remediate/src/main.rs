//! Remediate: applies an approved plan step by step, rolling back on failure.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::Remediate).await
}

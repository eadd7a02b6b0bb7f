//! Rca: the root cause of one attempt, and whether it is confident enough.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::Rca).await
}

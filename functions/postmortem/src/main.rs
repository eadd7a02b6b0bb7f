//! PostMortem: writes the post-mortem from the recorded timeline.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let deps = iras_lambda::deps_from_env().await?;
    iras_lambda::run_stage(&deps, iras_lambda::Stage::PostMortem).await
}

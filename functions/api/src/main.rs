//! api: the alert webhook, the incident API and health behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), iras_lambda::Error> {
    let app = iras_lambda::app_from_env(iras_lambda::Function::Api).await?;
    iras_lambda::run_http(app).await
}

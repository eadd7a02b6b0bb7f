//! SNS over HTTPS for the webhook's verifier: the signing certificate and the subscription
//! confirmation are plain GETs of URLs the verifier already checked are SNS's own.

use std::time::Duration;

use async_trait::async_trait;
use iras_intake::sns::SnsTransport;
use reqwest::Url;

/// A certificate is a few KB; anything much larger is not one.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

pub struct HttpsSnsTransport {
    client: reqwest::Client,
}

impl HttpsSnsTransport {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // The URLs were checked before the request; a redirect could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpsSnsTransport { client })
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let r = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", url.host_str().unwrap_or("?")))?;
        if !r.status().is_success() {
            return Err(format!(
                "GET {} answered {}",
                url.host_str().unwrap_or("?"),
                r.status()
            ));
        }
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_CERTIFICATE_BYTES {
            return Err("the answer is too large".into());
        }
        Ok(body.to_vec())
    }
}

#[async_trait]
impl SnsTransport for HttpsSnsTransport {
    async fn fetch_certificate(&self, url: &Url) -> Result<Vec<u8>, String> {
        self.get(url).await
    }
    async fn confirm_subscription(&self, subscribe_url: &Url) -> Result<(), String> {
        self.get(subscribe_url).await.map(|_| ())
    }
}

//! Amazon SNS over HTTPS: the three message types, and their signatures.
//!
//! Nothing an SNS message asks for is done before its signature verifies: the signing
//! certificate must come from an `https://sns.<region>.amazonaws.com/` URL, the signature
//! (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) must verify over the fields AWS
//! documents, and only then is a `SubscriptionConfirmation`'s `SubscribeURL` (itself checked
//! to be an SNS URL) fetched. Certificates are fetched through [`SnsTransport`], so tests use a
//! locally generated key and certificate; verified certificates are cached by URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sns::{SnsMessage, SnsSubscriptionMessage};
use aws_lc_rs::signature::{
    UnparsedPublicKey, VerificationAlgorithm, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_2048_8192_SHA256,
};
use base64::Engine;
use iras_core::{Alert, Timestamp};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
};
use serde_json::Value;
use url::Url;

use crate::{cloudwatch, IntakeError};

/// Certificates kept once verified (SNS signs with a handful per region).
const MAX_CACHED_CERTIFICATES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    SubscriptionConfirmation,
    Notification,
    UnsubscribeConfirmation,
}

/// A message SNS POSTed, as sent: signatures cover the strings exactly as they arrived.
#[derive(Debug, Clone)]
pub struct SnsEnvelope {
    pub kind: SnsKind,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub subject: Option<String>,
    /// As sent (the signed text), not reformatted.
    pub timestamp: String,
    pub sent_at: Timestamp,
    pub signature_version: String,
    pub signature: String,
    pub signing_cert_url: String,
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

fn raw_text(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Reads an SNS HTTP(S) body with `aws_lambda_events`' typed messages.
pub fn envelope(body: &Value) -> Result<SnsEnvelope, IntakeError> {
    let kind = match body.get("Type").and_then(Value::as_str) {
        Some("SubscriptionConfirmation") => SnsKind::SubscriptionConfirmation,
        Some("Notification") => SnsKind::Notification,
        Some("UnsubscribeConfirmation") => SnsKind::UnsubscribeConfirmation,
        _ => {
            return Err(IntakeError::new(
                "Type",
                "SubscriptionConfirmation, Notification or UnsubscribeConfirmation",
            ))
        }
    };
    let sent_at = match kind {
        SnsKind::Notification => {
            let m: SnsMessage = serde_json::from_value(body.clone())
                .map_err(|e| IntakeError::new("body", format!("an SNS Notification ({e})")))?;
            m.timestamp
        }
        _ => {
            let m: SnsSubscriptionMessage = serde_json::from_value(body.clone()).map_err(|e| {
                IntakeError::new("body", format!("an SNS subscription message ({e})"))
            })?;
            m.timestamp
        }
    };
    let need = |k: &str| raw_text(body, k).ok_or_else(|| IntakeError::new(k, "a string"));
    Ok(SnsEnvelope {
        kind,
        message_id: need("MessageId")?,
        topic_arn: need("TopicArn")?,
        message: need("Message")?,
        subject: raw_text(body, "Subject"),
        timestamp: need("Timestamp")?,
        sent_at,
        signature_version: need("SignatureVersion")?,
        signature: need("Signature")?,
        signing_cert_url: raw_text(body, "SigningCertURL")
            .or_else(|| raw_text(body, "SigningCertUrl"))
            .ok_or_else(|| IntakeError::new("SigningCertURL", "a string"))?,
        subscribe_url: raw_text(body, "SubscribeURL"),
        token: raw_text(body, "Token"),
    })
}

/// The text SNS signs, as AWS documents it: name and value lines, in this order.
pub fn string_to_sign(e: &SnsEnvelope) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| {
        s.push_str(k);
        s.push('\n');
        s.push_str(v);
        s.push('\n');
    };
    line("Message", &e.message);
    line("MessageId", &e.message_id);
    match e.kind {
        SnsKind::Notification => {
            if let Some(subject) = &e.subject {
                line("Subject", subject);
            }
        }
        _ => line("SubscribeURL", e.subscribe_url.as_deref().unwrap_or("")),
    }
    line("Timestamp", &e.timestamp);
    if e.kind != SnsKind::Notification {
        line("Token", e.token.as_deref().unwrap_or(""));
    }
    line("TopicArn", &e.topic_arn);
    line(
        "Type",
        match e.kind {
            SnsKind::SubscriptionConfirmation => "SubscriptionConfirmation",
            SnsKind::Notification => "Notification",
            SnsKind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        },
    );
    s
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnsError {
    /// Not from SNS, or tampered with: refused (403), nothing fetched.
    #[error("the SNS message is not authentic: {0}")]
    NotAuthentic(String),
    /// The certificate or confirmation could not be fetched: try again (503).
    #[error("could not reach SNS: {0}")]
    Unreachable(String),
}

/// An `https` URL on an SNS host (`sns.<region>.amazonaws.com`, or `.amazonaws.com.cn`).
pub fn sns_url(raw: &str, what: &str) -> Result<Url, SnsError> {
    let url =
        Url::parse(raw).map_err(|_| SnsError::NotAuthentic(format!("{what} is not a URL")))?;
    let host = url.host_str().unwrap_or("");
    let region = host.strip_prefix("sns.").and_then(|h| {
        h.strip_suffix(".amazonaws.com")
            .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
    });
    let region_ok = region.is_some_and(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if url.scheme() != "https" || !region_ok || url.port().is_some() || !url.username().is_empty() {
        return Err(SnsError::NotAuthentic(format!(
            "{what} {raw} is not an https://sns.<region>.amazonaws.com/ URL"
        )));
    }
    Ok(url)
}

/// What verification needs from the network; the real one is an HTTPS client, tests serve a
/// local certificate.
#[async_trait]
pub trait SnsTransport: Send + Sync {
    /// The PEM certificate at `url` (already checked to be an SNS URL).
    async fn fetch_certificate(&self, url: &Url) -> Result<Vec<u8>, String>;
    /// Visits a verified confirmation's `SubscribeURL`.
    async fn confirm_subscription(&self, subscribe_url: &Url) -> Result<(), String>;
}

/// SHA1withRSA or SHA256withRSA over an RSA public key, for the X.509 parser to check a
/// message against the certificate's key.
#[derive(Debug)]
struct RsaPkcs1(&'static dyn VerificationAlgorithm, AlgorithmIdentifier);

impl SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        UnparsedPublicKey::new(self.0, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        rustls_pki_types::alg_id::RSA_ENCRYPTION
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.1
    }
}

/// sha1WithRSAEncryption (1.2.840.113549.1.1.5), which pki-types does not name.
const RSA_PKCS1_SHA1_ID: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
]);

static SHA1_RSA: RsaPkcs1 = RsaPkcs1(
    &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_SHA1_ID,
);
static SHA256_RSA: RsaPkcs1 = RsaPkcs1(
    &RSA_PKCS1_2048_8192_SHA256,
    rustls_pki_types::alg_id::RSA_PKCS1_SHA256,
);

/// Checks `envelope` against the PEM certificate `pem`.
pub fn verify_with(envelope: &SnsEnvelope, pem: &[u8]) -> Result<(), SnsError> {
    let alg: &RsaPkcs1 = match envelope.signature_version.as_str() {
        "1" => &SHA1_RSA,
        "2" => &SHA256_RSA,
        v => {
            return Err(SnsError::NotAuthentic(format!(
                "SignatureVersion {v} is neither 1 nor 2"
            )))
        }
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(envelope.signature.trim())
        .map_err(|_| SnsError::NotAuthentic("Signature is not base64".into()))?;
    let der = CertificateDer::from_pem_slice(pem)
        .map_err(|e| SnsError::NotAuthentic(format!("the signing certificate is not PEM ({e})")))?;
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| {
        SnsError::NotAuthentic(format!("the signing certificate is unreadable ({e})"))
    })?;
    cert.verify_signature(alg, string_to_sign(envelope).as_bytes(), &signature)
        .map_err(|_| SnsError::NotAuthentic("the signature does not verify".into()))
}

/// Verifies SNS messages, fetching (and caching) signing certificates through a transport.
pub struct SnsVerifier {
    transport: Arc<dyn SnsTransport>,
    certificates: Mutex<HashMap<String, Vec<u8>>>,
}

impl SnsVerifier {
    pub fn new(transport: Arc<dyn SnsTransport>) -> Self {
        SnsVerifier {
            transport,
            certificates: Mutex::new(HashMap::new()),
        }
    }

    pub async fn verify(&self, envelope: &SnsEnvelope) -> Result<(), SnsError> {
        let url = sns_url(&envelope.signing_cert_url, "SigningCertURL")?;
        if !url.path().ends_with(".pem") {
            return Err(SnsError::NotAuthentic(
                "SigningCertURL does not name a .pem certificate".into(),
            ));
        }
        let cached = self
            .certificates
            .lock()
            .expect("certificate cache poisoned")
            .get(url.as_str())
            .cloned();
        if let Some(pem) = cached {
            return verify_with(envelope, &pem);
        }
        let pem = self
            .transport
            .fetch_certificate(&url)
            .await
            .map_err(SnsError::Unreachable)?;
        verify_with(envelope, &pem)?;
        let mut cache = self
            .certificates
            .lock()
            .expect("certificate cache poisoned");
        if cache.len() >= MAX_CACHED_CERTIFICATES {
            cache.clear();
        }
        cache.insert(url.to_string(), pem);
        Ok(())
    }

    /// Confirms a subscription, only once its message verified.
    pub async fn confirm(&self, envelope: &SnsEnvelope) -> Result<(), SnsError> {
        if envelope.kind != SnsKind::SubscriptionConfirmation {
            return Err(SnsError::NotAuthentic(
                "only a SubscriptionConfirmation is confirmed".into(),
            ));
        }
        self.verify(envelope).await?;
        let raw = envelope
            .subscribe_url
            .as_deref()
            .ok_or_else(|| SnsError::NotAuthentic("SubscribeURL is missing".into()))?;
        let url = sns_url(raw, "SubscribeURL")?;
        self.transport
            .confirm_subscription(&url)
            .await
            .map_err(SnsError::Unreachable)
    }
}

/// The alerts a verified Notification carries: a CloudWatch alarm, or an IRAS alert as JSON.
pub fn notification_alerts(envelope: &SnsEnvelope) -> Result<Vec<Alert>, IntakeError> {
    if let Some(alarm) = cloudwatch::from_sns_message(&envelope.message, envelope.sent_at)? {
        return Ok(vec![alarm]);
    }
    match serde_json::from_str::<Value>(&envelope.message) {
        Ok(v @ Value::Object(_)) if v.get("title").is_some() => {
            let mut v = v;
            if v.get("timestamp").is_none() {
                v["timestamp"] = Value::String(envelope.timestamp.clone());
            }
            Ok(vec![Alert::from_json(v).map_err(IntakeError::from)?])
        }
        _ => Err(IntakeError::new(
            "Message",
            "a CloudWatch alarm, or an alert with `title` as JSON",
        )),
    }
}

//! SNS signatures (v1 SHA1withRSA, v2 SHA256withRSA) over AWS's documented bodies, re-signed
//! with a locally generated key whose certificate the test transport serves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use iras_core::AlertState;
use iras_intake::sns::{
    envelope, notification_alerts, sns_url, string_to_sign, SnsError, SnsTransport, SnsVerifier,
};
use serde_json::Value;
use url::Url;

fn file(rel: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn fixture(rel: &str) -> Value {
    serde_json::from_slice(&file(rel)).unwrap()
}

/// `body` signed as SNS would with the test key: SignatureVersion 2 (SHA256withRSA) here;
/// version 1 (SHA1withRSA, which aws-lc-rs verifies but does not sign) comes pre-signed with
/// the same key as `sns/signed-v1-<name>` (`openssl dgst -sha1 -sign`, see the README).
fn sign(body: Value, version: &str) -> Value {
    if version == "1" {
        let name = match body["Type"].as_str().unwrap() {
            "Notification" => "notification",
            _ => "subscription-confirmation",
        };
        return fixture(&format!("sns/signed-v1-{name}.json"));
    }
    let mut body = body;
    body["SignatureVersion"] = Value::String(version.into());
    let key = RsaKeyPair::from_pkcs8(&file("sns/test-signing-key.pk8")).unwrap();
    let text = string_to_sign(&envelope(&body).unwrap());
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        text.as_bytes(),
        &mut sig,
    )
    .unwrap();
    body["Signature"] = Value::String(base64::engine::general_purpose::STANDARD.encode(sig));
    body
}

#[derive(Default)]
struct LocalSns {
    certificate_fetches: AtomicUsize,
    confirmed: Mutex<Vec<String>>,
}

#[async_trait]
impl SnsTransport for LocalSns {
    async fn fetch_certificate(&self, _url: &Url) -> Result<Vec<u8>, String> {
        self.certificate_fetches.fetch_add(1, Ordering::SeqCst);
        Ok(file("sns/test-signing-cert.pem"))
    }
    async fn confirm_subscription(&self, url: &Url) -> Result<(), String> {
        self.confirmed.lock().unwrap().push(url.to_string());
        Ok(())
    }
}

#[tokio::test]
async fn a_signed_subscription_confirmation_is_confirmed_once_verified_under_both_versions() {
    for version in ["1", "2"] {
        let transport = Arc::new(LocalSns::default());
        let verifier = SnsVerifier::new(transport.clone());
        let body = sign(fixture("sns/subscription-confirmation.json"), version);
        verifier.confirm(&envelope(&body).unwrap()).await.unwrap();
        let confirmed = transport.confirmed.lock().unwrap().clone();
        assert_eq!(confirmed.len(), 1, "SignatureVersion {version}");
        assert!(confirmed[0]
            .starts_with("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"));
    }
}

#[tokio::test]
async fn a_tampered_or_unsigned_message_is_refused_and_nothing_is_fetched_but_the_certificate() {
    let transport = Arc::new(LocalSns::default());
    let verifier = SnsVerifier::new(transport.clone());
    let mut body = sign(fixture("sns/subscription-confirmation.json"), "1");
    body["SubscribeURL"] = Value::String(
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:999999999999:Other&Token=x".into(),
    );
    let e = verifier
        .confirm(&envelope(&body).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, SnsError::NotAuthentic(_)), "{e}");
    // AWS's own example signature is a placeholder: it cannot verify against any key.
    let documented = fixture("sns/subscription-confirmation.json");
    let e = verifier
        .confirm(&envelope(&documented).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, SnsError::NotAuthentic(_)), "{e}");
    assert!(transport.confirmed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_certificate_off_the_sns_hosts_is_never_fetched() {
    let transport = Arc::new(LocalSns::default());
    let verifier = SnsVerifier::new(transport.clone());
    for url in [
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://evil.example/sns.us-west-2.amazonaws.com/x.pem",
        "https://sns.us-west-2.amazonaws.com:8443/x.pem",
    ] {
        let mut body = sign(fixture("sns/notification.json"), "2");
        body["SigningCertURL"] = Value::String(url.into());
        let e = verifier
            .verify(&envelope(&body).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, SnsError::NotAuthentic(_)), "{url}: {e}");
    }
    assert_eq!(transport.certificate_fetches.load(Ordering::SeqCst), 0);
    assert!(sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", "cert").is_ok());
}

#[tokio::test]
async fn a_verified_certificate_is_fetched_once_for_many_messages() {
    let transport = Arc::new(LocalSns::default());
    let verifier = SnsVerifier::new(transport.clone());
    for _ in 0..3 {
        let body = sign(fixture("sns/notification.json"), "1");
        verifier.verify(&envelope(&body).unwrap()).await.unwrap();
    }
    assert_eq!(transport.certificate_fetches.load(Ordering::SeqCst), 1);
}

#[test]
fn the_notification_string_to_sign_includes_the_subject_only_when_sent() {
    let with = envelope(&fixture("sns/notification.json")).unwrap();
    assert!(string_to_sign(&with).contains("Subject\nMy First Message\n"));
    let mut body = fixture("sns/notification.json");
    body.as_object_mut().unwrap().remove("Subject");
    assert!(!string_to_sign(&envelope(&body).unwrap()).contains("Subject"));
    let confirm = envelope(&fixture("sns/unsubscribe-confirmation.json")).unwrap();
    let text = string_to_sign(&confirm);
    assert!(text.starts_with("Message\nYou have chosen to deactivate"));
    assert!(text.contains("\nToken\n2336412f"));
    assert!(text.ends_with("Type\nUnsubscribeConfirmation\n"));
}

#[test]
fn a_cloudwatch_alarm_in_an_sns_message_is_an_alert_keyed_by_its_arn() {
    let event = fixture("sns/lambda-event-cloudwatch-alarm.json");
    let message = event["Records"][0]["Sns"]["Message"].as_str().unwrap();
    let mut body = fixture("sns/notification.json");
    body["Message"] = Value::String(message.into());
    let alerts = notification_alerts(&envelope(&body).unwrap()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert!(
        a.title.starts_with("EXAMPLE: Threshold Crossed"),
        "{}",
        a.title
    );
    assert_eq!(
        a.fingerprint(),
        "cloudwatch:arn:aws:cloudwatch:REGION:ACCOUNT_NUMBER:alarm:EXAMPLE"
    );
    assert_eq!(a.state(), AlertState::Firing);
    assert_eq!(
        a.origin.as_ref().unwrap().host.as_deref(),
        Some("TestInstance")
    );
    let ok = message.replace("\"NewStateValue\": \"ALARM\"", "\"NewStateValue\": \"OK\"");
    body["Message"] = Value::String(ok);
    let r = &notification_alerts(&envelope(&body).unwrap()).unwrap()[0];
    assert_eq!(r.state(), AlertState::Resolved);
    assert_eq!(r.fingerprint(), a.fingerprint());
    let nodata = message.replace(
        "\"NewStateValue\": \"ALARM\"",
        "\"NewStateValue\": \"INSUFFICIENT_DATA\"",
    );
    body["Message"] = Value::String(nodata);
    let n = &notification_alerts(&envelope(&body).unwrap()).unwrap()[0];
    assert_eq!(n.state(), AlertState::NoData);
}

#[test]
fn a_plain_text_sns_message_is_refused_naming_the_message() {
    let e = notification_alerts(&envelope(&fixture("sns/notification.json")).unwrap()).unwrap_err();
    assert_eq!(e.field, "Message");
}

//! `GithubDeployments` against a fake GitHub REST API.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use iras_adapters::github::{parse_repos, API_VERSION};
use iras_adapters::{GithubConfig, GithubDeployments};
use iras_core::{DeploymentSource, SourceError};
use serde_json::{json, Value};

use crate::support::*;

const ALERT: &str = "2024-03-12T14:07:30Z";

fn source(fake: &FakeServer, repos: &str) -> GithubDeployments {
    let mut c = GithubConfig::new(
        fake.url(),
        Some("ghp_test".into()),
        parse_repos(repos).unwrap(),
    );
    c.environment = Some("production".into());
    GithubDeployments::new(c).unwrap()
}

fn deployment(id: u64, git_ref: &str, created: &str, description: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/payments/deployments/{id}"),
        "id": id, "node_id": "MDEwOkRlcGxveW1lbnQx",
        "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        "ref": git_ref, "task": "deploy", "payload": {}, "original_environment": "production",
        "environment": "production", "description": description,
        "creator": {"login": "m.okafor", "id": 1, "type": "User"},
        "created_at": created, "updated_at": created,
        "statuses_url": format!("https://api.github.com/repos/acme/payments/deployments/{id}/statuses"),
        "repository_url": "https://api.github.com/repos/acme/payments",
        "transient_environment": false, "production_environment": true
    })
}

fn status(id: u64, state: &str, created: &str) -> Value {
    json!({"id": id, "state": state, "description": format!("Deployment {state}"),
           "environment": "production", "created_at": created, "updated_at": created,
           "creator": {"login": "github-actions[bot]"}})
}

async fn github_fake() -> FakeServer {
    FakeServer::start(
        Router::new()
            .route(
                "/repos/{owner}/{repo}/deployments",
                get(|Path((owner, repo)): Path<(String, String)>| async move {
                    assert_eq!((owner.as_str(), repo.as_str()), ("acme", "payments"));
                    // Newest first, as GitHub lists them.
                    Json(json!([
                        deployment(6, "v2.3.2-rc1", "2024-03-12T14:20:00Z", "canary"),
                        deployment(
                            5,
                            "v2.3.1",
                            "2024-03-12T13:56:30Z",
                            "resolve tax region from billing country"
                        ),
                        deployment(
                            4,
                            "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
                            "2024-03-12T12:00:00Z",
                            ""
                        ),
                        deployment(3, "v2.3.0-hotfix", "2024-03-12T11:00:00Z", "failed rollout"),
                        deployment(2, "v2.2.9", "2024-03-12T10:00:00Z", "superseded"),
                        deployment(1, "v2.3.0", "2024-03-06T10:47:30Z", "too old"),
                    ]))
                }),
            )
            .route(
                "/repos/{owner}/{repo}/deployments/{id}/statuses",
                get(|Path((_, _, id)): Path<(String, String, u64)>| async move {
                    Json(match id {
                        6 => json!([
                            status(61, "in_progress", "2024-03-12T14:20:05Z"),
                            status(60, "queued", "2024-03-12T14:20:01Z")
                        ]),
                        // Oldest first on purpose: the latest is found by time, not position.
                        5 => json!([
                            status(50, "in_progress", "2024-03-12T13:56:40Z"),
                            status(51, "success", "2024-03-12T13:58:00Z")
                        ]),
                        4 => json!([status(41, "success", "2024-03-12T12:02:00Z")]),
                        3 => json!([
                            status(31, "failure", "2024-03-12T11:05:00Z"),
                            status(30, "in_progress", "2024-03-12T11:01:00Z")
                        ]),
                        2 => json!([
                            status(21, "inactive", "2024-03-12T12:02:00Z"),
                            status(20, "success", "2024-03-12T10:02:00Z")
                        ]),
                        _ => json!([]),
                    })
                }),
            ),
    )
    .await
}

#[tokio::test]
async fn a_normal_answer_keeps_only_live_deployments_in_the_window() {
    let fake = github_fake().await;
    let q = evidence_query(&["payment-service"], ALERT);
    let found = source(
        &fake,
        "payment-service=acme/payments,cart-service=acme/cart",
    )
    .deployments(&q)
    .await
    .unwrap();
    let seen: Vec<(&str, String)> = found
        .iter()
        .map(|d| {
            (
                d.version.as_str(),
                d.timestamp.format("%H:%M:%S").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a84d88e", "12:00:00".to_string()),
            ("v2.3.1", "13:56:30".to_string()),
            ("v2.3.2-rc1", "14:20:00".to_string()),
        ],
        "failed, superseded and too-old deployments are not deployments"
    );
    let v231 = &found[1];
    assert_eq!(v231.service, "payment-service");
    assert_eq!(v231.author, "m.okafor");
    assert_eq!(v231.description, "resolve tax region from billing country");
    assert_eq!(
        found[0].description, "Deployment success",
        "falls back to the status"
    );

    let reqs = fake.requests();
    assert!(
        reqs.iter().all(|r| !r.path.contains("/acme/cart/")),
        "cart-service was not asked for"
    );
    for r in &reqs {
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(r.header("x-github-api-version"), Some(API_VERSION));
        assert_eq!(r.header("authorization"), Some("Bearer ghp_test"));
        assert!(r.header("user-agent").unwrap().starts_with("iras/"));
    }
    let list = &reqs[0];
    assert_eq!(list.path, "/repos/acme/payments/deployments");
    assert_eq!(list.param("environment").as_deref(), Some("production"));
    assert_eq!(list.param("per_page").as_deref(), Some("100"));
    let mut status_paths: Vec<&str> = reqs[1..].iter().map(|r| r.path.as_str()).collect();
    status_paths.sort();
    assert_eq!(
        status_paths,
        vec![
            "/repos/acme/payments/deployments/2/statuses",
            "/repos/acme/payments/deployments/3/statuses",
            "/repos/acme/payments/deployments/4/statuses",
            "/repos/acme/payments/deployments/5/statuses",
            "/repos/acme/payments/deployments/6/statuses",
        ],
        "statuses only for deployments inside the window"
    );
}

#[tokio::test]
async fn no_services_named_reads_every_repository() {
    let fake = FakeServer::fixed(200, &[], "[]").await;
    let mut q = evidence_query(&[], ALERT);
    q.alert.service = None;
    let found = source(&fake, "payment-service=acme/payments,acme/cart")
        .deployments(&q)
        .await
        .unwrap();
    assert!(found.is_empty(), "an empty list is no deployments");
    let mut paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/repos/acme/cart/deployments",
            "/repos/acme/payments/deployments"
        ]
    );
}

#[tokio::test]
async fn a_rate_limit_is_named_with_its_reset_time() {
    let fake = FakeServer::fixed(
        403,
        &[
            ("content-type", "application/json"),
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1710252600"),
        ],
        r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#,
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake, "payment-service=acme/payments")
        .deployments(&q)
        .await
        .unwrap_err();
    let SourceError::Unavailable(m) = &e else {
        panic!("{e:?}")
    };
    assert!(m.contains("rate limited (403)"), "{m}");
    assert!(m.contains("resets at 14:10:00 UTC"), "{m}");
    assert!(m.contains("API rate limit exceeded"), "{m}");
}

#[tokio::test]
async fn a_secondary_rate_limit_says_when_to_retry() {
    let fake = FakeServer::fixed(
        429,
        &[("retry-after", "60")],
        r#"{"message":"You have exceeded a secondary rate limit."}"#,
    )
    .await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake, "payment-service=acme/payments")
        .deployments(&q)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::Unavailable(m) if m.contains("retry after 60 s")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_missing_repository_is_named() {
    let fake = FakeServer::fixed(404, &[], r#"{"message":"Not Found"}"#).await;
    let q = evidence_query(&["payment-service"], ALERT);
    let e = source(&fake, "payment-service=acme/payments")
        .deployments(&q)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SourceError::Unavailable(m) if m.contains("acme/payments") && m.contains("HTTP 404")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_slow_github_times_out() {
    let fake = FakeServer::slow(FAKE_DELAY, "[]").await;
    let mut c = GithubConfig::new(fake.url(), None, parse_repos("acme/payments").unwrap());
    c.timeout = SHORT_TIMEOUT;
    let q = evidence_query(&["payments"], ALERT);
    let e = GithubDeployments::new(c)
        .unwrap()
        .deployments(&q)
        .await
        .unwrap_err();
    assert_eq!(e, SourceError::Timeout(SHORT_TIMEOUT.as_millis() as u64));
}

#[tokio::test]
async fn malformed_bodies_are_bad_responses() {
    for body in [r#"{"message": "not a list"}"#, r#"[{"id": 1}]"#, "["] {
        let fake = FakeServer::fixed(200, &[], body).await;
        let q = evidence_query(&["payment-service"], ALERT);
        let e = source(&fake, "payment-service=acme/payments")
            .deployments(&q)
            .await
            .unwrap_err();
        assert!(matches!(e, SourceError::BadResponse(_)), "{body}: {e:?}");
    }
}

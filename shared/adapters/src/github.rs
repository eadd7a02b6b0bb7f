//! Deployments from GitHub's REST API: `GET /repos/{owner}/{repo}/deployments` for each
//! service's repository, and each recent deployment's latest status
//! (`GET /repos/{owner}/{repo}/deployments/{id}/statuses`). Only a deployment whose latest
//! status is `success` or `in_progress` counts as deployed.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use iras_core::config::ConfigError;
use iras_core::{Deployment, DeploymentSource, EvidenceQuery, SourceError};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::Deserialize;

use crate::client::{header, retry_after, Caller, Failure, Reply};
use crate::config::{endpoint, error, Vars};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const API_VERSION: &str = "2022-11-28";
const PER_PAGE: usize = 100;
/// Pages of deployments read per repository at most (newest first).
const MAX_PAGES: u32 = 3;
const CONCURRENCY: usize = 4;

/// One service's repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoMapping {
    pub service: String,
    pub owner: String,
    pub repo: String,
}

/// `payment-service=acme/payments,cart-service=acme/cart`; a bare `acme/cart` maps the
/// service `cart`.
pub fn parse_repos(v: &str) -> Result<Vec<RepoMapping>, String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (service, full) = match item.split_once('=') {
            Some((s, r)) => (s.trim().to_string(), r.trim()),
            None => (String::new(), item),
        };
        let Some((owner, repo)) = full.split_once('/') else {
            return Err(format!("`{item}` is not service=owner/repo"));
        };
        if !valid(owner) || !valid(repo) {
            return Err(format!("`{full}` is not an owner/repo name"));
        }
        let service = if service.is_empty() {
            repo.to_string()
        } else {
            service
        };
        out.push(RepoMapping {
            service,
            owner: owner.into(),
            repo: repo.into(),
        });
    }
    if out.is_empty() {
        return Err("no repository listed".into());
    }
    Ok(out)
}

#[derive(Clone)]
pub struct GithubConfig {
    pub api_url: Url,
    pub token: Option<String>,
    pub repos: Vec<RepoMapping>,
    /// Only deployments to this environment (`production`), when set.
    pub environment: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("api_url", &self.api_url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("repos", &self.repos)
            .field("environment", &self.environment)
            .finish()
    }
}

impl GithubConfig {
    pub fn new(api_url: Url, token: Option<String>, repos: Vec<RepoMapping>) -> Self {
        GithubConfig {
            api_url,
            token,
            repos,
            environment: None,
            timeout: crate::config::DEFAULT_TIMEOUT,
        }
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(repos) = vars.get("GITHUB_REPOS") else {
            if vars.is_set("GITHUB_TOKEN") {
                return Err(error(
                    "GITHUB_REPOS",
                    "GITHUB_TOKEN is set but no repository is named: set GITHUB_REPOS=service=owner/repo,...",
                ));
            }
            return Ok(None);
        };
        let repos = parse_repos(repos).map_err(|p| error("GITHUB_REPOS", p))?;
        let mut c = GithubConfig::new(
            vars.url_or("GITHUB_API_URL", DEFAULT_API_URL)?,
            vars.get("GITHUB_TOKEN").map(str::to_string),
            repos,
        );
        c.environment = vars.get("GITHUB_ENVIRONMENT").map(str::to_string);
        c.timeout = vars.timeout()?;
        Ok(Some(c))
    }
}

pub struct GithubDeployments {
    config: GithubConfig,
    caller: Caller,
}

impl std::fmt::Debug for GithubDeployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

#[derive(Debug, Deserialize)]
struct RawDeployment {
    id: u64,
    #[serde(default)]
    sha: String,
    #[serde(default, rename = "ref")]
    git_ref: String,
    #[serde(default)]
    description: Option<String>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    creator: Option<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    login: String,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    #[serde(default)]
    id: u64,
    state: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    description: Option<String>,
}

/// A deployment counts when it is live or going live.
fn counts_as_deployed(state: &str) -> bool {
    matches!(state, "success" | "in_progress")
}

fn version_of(d: &RawDeployment) -> String {
    let r = d.git_ref.trim();
    let is_sha = r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit());
    if r.is_empty() || is_sha {
        d.sha.chars().take(7).collect()
    } else {
        r.to_string()
    }
}

impl GithubDeployments {
    pub fn new(config: GithubConfig) -> Result<Self, ConfigError> {
        let caller =
            Caller::new("github", config.timeout).map_err(|e| error("GITHUB_API_URL", e))?;
        Ok(GithubDeployments { config, caller })
    }

    fn get(&self, url: Url) -> RequestBuilder {
        let mut r = self
            .caller
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(token) = &self.config.token {
            r = r.bearer_auth(token);
        }
        r
    }

    /// GitHub says "rate limit" with 403 or 429 and its headers; anything else not 2xx is
    /// named with its message.
    fn refusal(&self, reply: &Reply, what: &str) -> Failure {
        let remaining = header(&reply.headers, "x-ratelimit-remaining");
        let limited = matches!(
            reply.status,
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) && (remaining == Some("0")
            || reply.headers.contains_key(reqwest::header::RETRY_AFTER)
            || reply.status == StatusCode::TOO_MANY_REQUESTS);
        let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| crate::client::snippet(&reply.body));
        if limited {
            let when = match (
                retry_after(&reply.headers),
                header(&reply.headers, "x-ratelimit-reset"),
            ) {
                (Some(d), _) => format!("retry after {} s", d.as_secs()),
                (None, Some(reset)) => reset
                    .parse::<i64>()
                    .ok()
                    .and_then(|s| DateTime::from_timestamp(s, 0))
                    .map(|t| format!("resets at {}", t.format("%H:%M:%S UTC")))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return Failure::Unavailable(format!(
                "github: rate limited ({}) while reading {what}; {when}: {message}",
                reply.status.as_u16()
            ));
        }
        let hint = match reply.status {
            StatusCode::UNAUTHORIZED => " (check GITHUB_TOKEN)",
            StatusCode::NOT_FOUND => " (no such repository, or the token cannot see it)",
            _ => "",
        };
        Failure::Unavailable(format!(
            "github: {what}: HTTP {}{hint}: {message}",
            reply.status.as_u16()
        ))
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> Result<Vec<T>, Failure> {
        let reply = self.caller.call(request).await?;
        if !reply.status.is_success() {
            return Err(self.refusal(&reply, what));
        }
        self.caller.json(&reply)
    }

    async fn repo_deployments(
        &self,
        m: &RepoMapping,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, Failure> {
        let what = format!("deployments of {}/{}", m.owner, m.repo);
        let url = endpoint(
            &self.config.api_url,
            &["repos", &m.owner, &m.repo, "deployments"],
        );
        let mut recent = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut params = vec![
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            if let Some(env) = &self.config.environment {
                params.push(("environment", env.clone()));
            }
            let batch: Vec<RawDeployment> = self
                .list(self.get(url.clone()).query(&params), &what)
                .await?;
            let full = batch.len() == PER_PAGE;
            // Newest first: once a page reaches before `since`, older pages cannot matter.
            let reached_since = batch.iter().any(|d| d.created_at < since);
            recent.extend(
                batch
                    .into_iter()
                    .filter(|d| d.created_at >= since && d.created_at <= until),
            );
            if !full || reached_since {
                break;
            }
        }
        let found: Vec<Option<Deployment>> = stream::iter(recent)
            .map(|d| async move {
                let url = endpoint(
                    &self.config.api_url,
                    &[
                        "repos",
                        &m.owner,
                        &m.repo,
                        "deployments",
                        &d.id.to_string(),
                        "statuses",
                    ],
                );
                let what = format!("statuses of deployment {} of {}/{}", d.id, m.owner, m.repo);
                let statuses: Vec<RawStatus> = self
                    .list(
                        self.get(url).query(&[("per_page", PER_PAGE.to_string())]),
                        &what,
                    )
                    .await?;
                let latest = statuses.into_iter().max_by_key(|s| (s.created_at, s.id));
                Ok::<_, Failure>(latest.filter(|s| counts_as_deployed(&s.state)).map(|s| {
                    Deployment {
                        service: m.service.clone(),
                        version: version_of(&d),
                        timestamp: d.created_at,
                        description: d
                            .description
                            .clone()
                            .filter(|x| !x.trim().is_empty())
                            .or(s.description)
                            .unwrap_or_default(),
                        author: d
                            .creator
                            .as_ref()
                            .map(|c| c.login.clone())
                            .unwrap_or_default(),
                    }
                }))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

#[async_trait]
impl DeploymentSource for GithubDeployments {
    fn name(&self) -> String {
        "github".into()
    }

    async fn deployments(&self, query: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        // No services named means "whatever the source has": every configured repository.
        let repos: Vec<usize> = (0..self.config.repos.len())
            .filter(|i| {
                query.services.is_empty() || query.services.contains(&self.config.repos[*i].service)
            })
            .collect();
        let (since, until) = (query.window.deployments_since, query.window.end);
        let per_repo: Vec<Vec<Deployment>> = stream::iter(repos)
            .map(|i| async move {
                self.repo_deployments(&self.config.repos[i], since, until)
                    .await
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut all: Vec<Deployment> = per_repo.into_iter().flatten().collect();
        all.sort_by_key(|d| d.timestamp);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_map_services_to_repositories() {
        let r = parse_repos("payment-service=acme/payments, acme/cart").unwrap();
        assert_eq!(r[0].service, "payment-service");
        assert_eq!(
            (r[0].owner.as_str(), r[0].repo.as_str()),
            ("acme", "payments")
        );
        assert_eq!(r[1].service, "cart");
        assert!(parse_repos("x=acme").is_err());
        assert!(parse_repos("x=../etc/passwd").is_err());
        assert!(parse_repos(" , ").is_err());
    }

    #[test]
    fn only_live_deployments_count() {
        for s in ["success", "in_progress"] {
            assert!(counts_as_deployed(s));
        }
        for s in ["failure", "error", "inactive", "queued", "pending"] {
            assert!(!counts_as_deployed(s));
        }
    }
}

//! IRAS integrations over HTTP: evidence from Prometheus, Loki, Elasticsearch/OpenSearch and
//! GitHub deployments; notifications to Slack; pages through PagerDuty. Each implements a core
//! port, is built from environment variables, and turns every failure (an error status, a
//! timeout, a malformed answer) into the port's error so the stage records it and goes on.
//!
//! Each kind is behind a feature (`evidence`, `slack`, `pagerduty`, `runner`, `sns`), so a
//! function links only the integrations its stage calls.

// A build with some kinds leaves helpers of the others unused; the full build still checks.
#![cfg_attr(
    not(all(
        feature = "evidence",
        feature = "slack",
        feature = "pagerduty",
        feature = "runner",
        feature = "sns"
    )),
    allow(dead_code)
)]

mod client;
pub mod config;
#[cfg(feature = "evidence")]
pub mod elasticsearch;
pub mod escape;
#[cfg(feature = "evidence")]
pub mod github;
#[cfg(feature = "evidence")]
pub mod logs;
#[cfg(feature = "evidence")]
pub mod loki;
#[cfg(feature = "pagerduty")]
pub mod pagerduty;
#[cfg(feature = "evidence")]
pub mod prometheus;
#[cfg(feature = "runner")]
pub mod runner;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "sns")]
pub mod sns;

use std::collections::HashMap;
#[cfg(any(feature = "evidence", feature = "slack", feature = "pagerduty"))]
use std::sync::Arc;

use iras_core::config::ConfigError;
#[cfg(feature = "evidence")]
use iras_core::EvidenceQuery;
use iras_core::Integrations;

#[cfg(feature = "evidence")]
pub use elasticsearch::{ElasticsearchAuth, ElasticsearchConfig, ElasticsearchSource};
#[cfg(feature = "evidence")]
pub use github::{GithubConfig, GithubDeployments, RepoMapping};
#[cfg(feature = "evidence")]
pub use loki::{LokiConfig, LokiSource};
#[cfg(feature = "pagerduty")]
pub use pagerduty::{PagerDutyConfig, PagerDutyPager};
#[cfg(feature = "evidence")]
pub use prometheus::{PrometheusConfig, PrometheusSource, Signal};
#[cfg(feature = "runner")]
pub use runner::{RunnerConfig, RunnerExecutor};
#[cfg(feature = "slack")]
pub use slack::{SlackConfig, SlackNotifier};
#[cfg(feature = "sns")]
pub use sns::HttpsSnsTransport;

/// The services to read for a query: the ones named, else the alert's own. Metric and log
/// backends cannot be asked for "everything", so with neither there is nothing to read.
#[cfg(feature = "evidence")]
pub(crate) fn services_for(query: &EvidenceQuery) -> Vec<String> {
    if !query.services.is_empty() {
        return query.services.clone();
    }
    query.alert.service.clone().into_iter().collect()
}

/// Builds every integration this build has ([`evidence_from_env`], [`slack_from_env`],
/// [`pagerduty_from_env`]) that the variables configure. A badly formed value (a URL that is
/// not one, half of a pair, an unknown label name) is an error naming the variable.
pub fn integrations_from_env(vars: &HashMap<String, String>) -> Result<Integrations, ConfigError> {
    #[allow(unused_mut)]
    let mut out = Integrations::default();
    #[cfg(feature = "evidence")]
    out.merge(evidence_from_env(vars)?);
    #[cfg(feature = "slack")]
    out.merge(slack_from_env(vars)?);
    #[cfg(feature = "pagerduty")]
    out.merge(pagerduty_from_env(vars)?);
    let _ = vars;
    Ok(out)
}

/// Prometheus, Loki, Elasticsearch and GitHub, each when its variables are set.
#[cfg(feature = "evidence")]
pub fn evidence_from_env(vars: &HashMap<String, String>) -> Result<Integrations, ConfigError> {
    let vars = config::Vars(vars);
    let mut out = Integrations::default();

    match PrometheusConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "Prometheus at {}: {} per service, baseline 7 days earlier",
                c.base_url,
                c.signals
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            out.evidence
                .metrics
                .push(Arc::new(PrometheusSource::new(c)?));
        }
        None => out
            .notes
            .push("Prometheus unset (PROMETHEUS_BASE_URL): metrics from scenarios only".into()),
    }

    let loki = LokiConfig::from_vars(&vars)?;
    let elastic = ElasticsearchConfig::from_vars(&vars)?;
    if loki.is_none() && elastic.is_none() {
        out.notes.push(
            "Loki and Elasticsearch unset (LOKI_BASE_URL, ELASTICSEARCH_BASE_URL): logs from scenarios only"
                .into(),
        );
    }
    if let Some(c) = loki {
        out.notes.push(format!(
            "Loki at {}: lines matching {} by label `{}`, at most {} per service",
            c.base_url, c.line_pattern, c.service_label, c.limit
        ));
        out.evidence.logs.push(Arc::new(LokiSource::new(c)?));
    }
    if let Some(c) = elastic {
        out.notes.push(format!(
            "Elasticsearch at {}: index `{}`, warn/error lines by `{}`, at most {}",
            c.base_url, c.index, c.service_field, c.limit
        ));
        out.evidence
            .logs
            .push(Arc::new(ElasticsearchSource::new(c)?));
    }

    match GithubConfig::from_vars(&vars)? {
        Some(c) => {
            let repos: Vec<String> = c
                .repos
                .iter()
                .map(|m| format!("{} → {}/{}", m.service, m.owner, m.repo))
                .collect();
            out.notes.push(format!(
                "GitHub deployments at {}{}: {}{}",
                c.api_url,
                c.environment
                    .as_deref()
                    .map(|e| format!(" (environment {e})"))
                    .unwrap_or_default(),
                repos.join(", "),
                if c.token.is_none() {
                    "; GITHUB_TOKEN unset: unauthenticated, 60 requests an hour, public repositories only"
                } else {
                    ""
                }
            ));
            out.evidence
                .deployments
                .push(Arc::new(GithubDeployments::new(c)?));
        }
        None => out
            .notes
            .push("GitHub unset (GITHUB_REPOS): deployments from scenarios only".into()),
    }

    Ok(out)
}

/// Slack, when `SLACK_BOT_TOKEN` and `SLACK_ONCALL_CHANNEL_ID` are set.
#[cfg(feature = "slack")]
pub fn slack_from_env(vars: &HashMap<String, String>) -> Result<Integrations, ConfigError> {
    let vars = config::Vars(vars);
    let mut out = Integrations::default();
    match SlackConfig::from_vars(&vars)? {
        Some(c) => {
            let mut note = format!("Slack: approvals and updates in channel {}", c.channel);
            if !vars.is_set("SLACK_SIGNING_SECRET") {
                note.push_str(
                    "; SLACK_SIGNING_SECRET unset: the Approve/Reject buttons are refused, decide on the approval page",
                );
            }
            if let Some(g) = &c.oncall_usergroup {
                note.push_str(&format!("; approval requests mention user group {g}"));
            }
            out.notes.push(note);
            let slack = Arc::new(SlackNotifier::new(c)?);
            out.notifier = Some(slack.clone());
            out.slack = Some(slack);
        }
        None => out.notes.push(
            "Slack unset (SLACK_BOT_TOKEN, SLACK_ONCALL_CHANNEL_ID): notifications on the console"
                .into(),
        ),
    }

    Ok(out)
}

/// PagerDuty, when `PAGERDUTY_INTEGRATION_KEY` is set.
#[cfg(feature = "pagerduty")]
pub fn pagerduty_from_env(vars: &HashMap<String, String>) -> Result<Integrations, ConfigError> {
    let vars = config::Vars(vars);
    let mut out = Integrations::default();
    match PagerDutyConfig::from_vars(&vars)? {
        Some(c) => {
            out.notes.push(format!(
                "PagerDuty: escalations page through {} (dedup by incident id)",
                c.events_url
            ));
            out.pager = Some(Arc::new(PagerDutyPager::new(c)?));
        }
        None => out
            .notes
            .push("PagerDuty unset (PAGERDUTY_INTEGRATION_KEY): pages on the console".into()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use iras_core::testing::vars;

    #[test]
    fn nothing_set_builds_nothing_and_says_what_falls_back() {
        let i = integrations_from_env(&vars(&[])).unwrap();
        assert!(
            i.evidence.logs.is_empty()
                && i.evidence.metrics.is_empty()
                && i.evidence.deployments.is_empty()
        );
        assert!(i.notifier.is_none() && i.pager.is_none());
        let notes = i.notes.join("\n");
        assert!(
            notes.contains("Prometheus unset (PROMETHEUS_BASE_URL): metrics from scenarios only")
        );
        assert!(notes.contains("logs from scenarios only"));
        assert!(notes.contains("deployments from scenarios only"));
        assert!(notes.contains("notifications on the console"));
        assert!(notes.contains("pages on the console"));
    }

    #[test]
    fn everything_set_builds_every_integration() {
        let i = integrations_from_env(&vars(&[
            ("PROMETHEUS_BASE_URL", "http://prom:9090"),
            ("LOKI_BASE_URL", "http://loki:3100"),
            ("ELASTICSEARCH_BASE_URL", "https://es:9200"),
            ("ELASTICSEARCH_API_KEY", "k"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("GITHUB_REPOS", "payment-service=acme/payments"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_ONCALL_CHANNEL_ID", "C1"),
            ("PAGERDUTY_INTEGRATION_KEY", "R0UTING"),
            ("INTEGRATION_TIMEOUT_SECONDS", "3"),
        ]))
        .unwrap();
        assert_eq!(i.evidence.metrics[0].name(), "prometheus");
        let logs: Vec<String> = i.evidence.logs.iter().map(|l| l.name()).collect();
        assert_eq!(logs, vec!["loki", "elasticsearch"]);
        assert_eq!(i.evidence.deployments[0].name(), "github");
        assert_eq!(i.notifier.as_ref().unwrap().name(), "slack");
        assert_eq!(i.pager.as_ref().unwrap().name(), "pagerduty");
        let shown = format!("{i:?}");
        for secret in ["ghp_x", "xoxb-1", "R0UTING"] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!i.notes.join(" ").contains(secret));
        }
        assert!(i.notes.join(" ").contains("SLACK_SIGNING_SECRET unset"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, name) in [
            (
                vec![("PROMETHEUS_BASE_URL", "prom:9090")],
                "PROMETHEUS_BASE_URL",
            ),
            (vec![("GITHUB_TOKEN", "t")], "GITHUB_REPOS"),
            (vec![("GITHUB_REPOS", "payments")], "GITHUB_REPOS"),
            (vec![("SLACK_ONCALL_CHANNEL_ID", "C1")], "SLACK_BOT_TOKEN"),
            (
                vec![("LOKI_BASE_URL", "http://l"), ("LOKI_LIMIT", "0")],
                "LOKI_LIMIT",
            ),
            (
                vec![
                    ("PAGERDUTY_INTEGRATION_KEY", "k"),
                    ("INTEGRATION_TIMEOUT_SECONDS", "soon"),
                ],
                "INTEGRATION_TIMEOUT_SECONDS",
            ),
        ] {
            let e = integrations_from_env(&vars(&pairs)).unwrap_err();
            assert_eq!(e.name, name, "{pairs:?}: {e}");
        }
    }
}

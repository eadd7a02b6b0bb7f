//! Problem log lines from Loki (`GET /loki/api/v1/query_range`, a `streams` result): one
//! LogQL query per service, newest lines first, bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use iras_core::config::ConfigError;
use iras_core::{EvidenceQuery, LogLevel, LogLine, LogSource, SourceError};
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Caller, Failure};
use crate::config::{endpoint_path, error, Vars};
use crate::escape::{is_label_name, quoted_string_body};
use crate::logs::{cap_line, level_of_line, DEFAULT_PROBLEM_PATTERN};

pub const DEFAULT_LIMIT: u64 = 500;
const CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct LokiConfig {
    pub base_url: Url,
    /// The stream label that names the service (`service`, `app`, `service_name`, ...).
    pub service_label: String,
    /// RE2 pattern a line must match (`|~`); the default keeps warnings and errors.
    pub line_pattern: String,
    /// Lines per service at most (Loki's `limit`).
    pub limit: u64,
    pub timeout: Duration,
    /// `X-Scope-OrgID` for a multi-tenant Loki.
    pub tenant: Option<String>,
    pub bearer_token: Option<String>,
}

impl LokiConfig {
    pub fn new(base_url: Url) -> Self {
        LokiConfig {
            base_url,
            service_label: "service".into(),
            line_pattern: DEFAULT_PROBLEM_PATTERN.into(),
            limit: DEFAULT_LIMIT,
            timeout: crate::config::DEFAULT_TIMEOUT,
            tenant: None,
            bearer_token: None,
        }
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = vars.url("LOKI_BASE_URL")? else {
            return Ok(None);
        };
        let mut c = LokiConfig::new(base_url);
        if let Some(label) = vars.get("LOKI_SERVICE_LABEL") {
            if !is_label_name(label) {
                return Err(error(
                    "LOKI_SERVICE_LABEL",
                    format!("`{label}` is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                ));
            }
            c.service_label = label.to_string();
        }
        if let Some(p) = vars.get("LOKI_LINE_FILTER") {
            c.line_pattern = p.to_string();
        }
        c.limit = vars.number("LOKI_LIMIT", DEFAULT_LIMIT, (1, 5000))?;
        c.timeout = vars.timeout()?;
        c.tenant = vars.get("LOKI_TENANT_ID").map(str::to_string);
        c.bearer_token = vars.get("LOKI_BEARER_TOKEN").map(str::to_string);
        Ok(Some(c))
    }
}

pub struct LokiSource {
    config: LokiConfig,
    caller: Caller,
}

impl std::fmt::Debug for LokiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiSource")
            .field("base_url", &self.config.base_url.as_str())
            .field("service_label", &self.config.service_label)
            .finish()
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<StreamsData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct StreamsData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    /// `[ns, line]`, or `[ns, line, structured metadata]` on newer Loki.
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

impl LokiSource {
    pub fn new(config: LokiConfig) -> Result<Self, ConfigError> {
        let caller = Caller::new("loki", config.timeout).map_err(|e| error("LOKI_BASE_URL", e))?;
        Ok(LokiSource { config, caller })
    }

    /// `{service="<escaped>"} |~ "<pattern>"`: the service is a label value, never LogQL.
    pub fn logql(&self, service: &str) -> String {
        format!(
            "{{{}=\"{}\"}} |~ \"{}\"",
            self.config.service_label,
            quoted_string_body(service),
            quoted_string_body(&self.config.line_pattern)
        )
    }

    async fn service_logs(
        &self,
        service: &str,
        query: &EvidenceQuery,
    ) -> Result<Vec<LogLine>, Failure> {
        let url = endpoint_path(&self.config.base_url, "loki/api/v1/query_range");
        let ns = |t: chrono::DateTime<chrono::Utc>| {
            t.timestamp_nanos_opt()
                .unwrap_or(t.timestamp() * 1_000_000_000)
                .to_string()
        };
        let mut request = self.caller.client.get(url).query(&[
            ("query", self.logql(service)),
            ("start", ns(query.window.start)),
            ("end", ns(query.window.end)),
            ("limit", self.config.limit.to_string()),
            ("direction", "backward".to_string()),
        ]);
        if let Some(tenant) = &self.config.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        }
        let reply = self.caller.call(request).await?;
        let what = format!("logs of {service}");
        // Loki answers a bad query with 400 and a plain-text reason.
        if !reply.status.is_success() {
            return Err(self.caller.status_failure(&reply, &what));
        }
        let body: ApiResponse = self.caller.json(&reply)?;
        if body.status != "success" {
            return Err(Failure::Unavailable(format!(
                "loki: {what}: status {}: {}",
                body.status,
                body.error.as_deref().unwrap_or("no detail")
            )));
        }
        let data = body
            .data
            .ok_or_else(|| Failure::BadResponse(format!("loki: {what}: success without data")))?;
        if data.result_type != "streams" {
            return Err(Failure::BadResponse(format!(
                "loki: {what}: expected streams, got `{}`",
                data.result_type
            )));
        }
        let mut lines = Vec::new();
        for stream in data.result {
            let labelled = ["level", "detected_level", "severity", "lvl"]
                .iter()
                .find_map(|k| stream.stream.get(*k).and_then(|v| LogLevel::parse(v)));
            for entry in stream.values {
                let (Some(ts), Some(text)) = (
                    entry.first().and_then(Value::as_str),
                    entry.get(1).and_then(Value::as_str),
                ) else {
                    return Err(Failure::BadResponse(format!(
                        "loki: {what}: an entry is not [\"<ns>\", \"<line>\"]"
                    )));
                };
                let nanos: i64 = ts.parse().map_err(|_| {
                    Failure::BadResponse(format!(
                        "loki: {what}: timestamp `{ts}` is not nanoseconds"
                    ))
                })?;
                lines.push(LogLine {
                    timestamp: chrono::Utc.timestamp_nanos(nanos),
                    service: service.to_string(),
                    level: labelled.unwrap_or_else(|| level_of_line(text)),
                    message: cap_line(text),
                });
            }
        }
        Ok(lines)
    }
}

#[async_trait]
impl LogSource for LokiSource {
    fn name(&self) -> String {
        "loki".into()
    }

    async fn logs(&self, query: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        let services = crate::services_for(query);
        let per_service: Vec<Vec<LogLine>> = stream::iter(services)
            .map(|s| async move { self.service_logs(&s, query).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut lines: Vec<LogLine> = per_service.into_iter().flatten().collect();
        lines.sort_by_key(|l| l.timestamp);
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_a_quoted_label_value() {
        let src =
            LokiSource::new(LokiConfig::new(Url::parse("http://loki:3100").unwrap())).unwrap();
        assert_eq!(
            src.logql(r#"pay"} or vector(1) #"#),
            r#"{service="pay\"} or vector(1) #"} |~ "(?i)(warn|error|fatal|exception|panic)""#
        );
    }

    #[test]
    fn a_bad_label_name_is_refused() {
        let vars: std::collections::HashMap<String, String> = [
            ("LOKI_BASE_URL".to_string(), "http://loki:3100".to_string()),
            ("LOKI_SERVICE_LABEL".to_string(), "app-name".to_string()),
        ]
        .into();
        assert_eq!(
            LokiConfig::from_vars(&Vars(&vars)).unwrap_err().name,
            "LOKI_SERVICE_LABEL"
        );
    }
}

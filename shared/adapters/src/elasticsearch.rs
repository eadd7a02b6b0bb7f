//! Problem log lines from Elasticsearch or OpenSearch (`POST /<index>/_search`, query DSL):
//! a `bool` filter on `@timestamp`, the services and the levels, newest first, bounded.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use iras_core::config::ConfigError;
use iras_core::{EvidenceQuery, LogLevel, LogLine, LogSource, SourceError};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Caller, Failure};
use crate::config::{endpoint, error, Vars};
use crate::logs::{cap_line, level_of_line};

pub const DEFAULT_LIMIT: u64 = 500;
const TIMESTAMP_FIELD: &str = "@timestamp";
/// Level values worth reading, as loggers write them (ECS `log.level` is a keyword, so case
/// matters; a `text` field matches the lowercase ones).
const PROBLEM_LEVELS: [&str; 21] = [
    "warn", "warning", "error", "err", "fatal", "critical", "panic", "WARN", "WARNING", "ERROR",
    "ERR", "FATAL", "CRITICAL", "PANIC", "Warn", "Warning", "Error", "Err", "Fatal", "Critical",
    "Panic",
];

#[derive(Clone)]
pub enum ElasticsearchAuth {
    None,
    Basic {
        username: String,
        password: String,
    },
    /// The encoded API key, sent as `Authorization: ApiKey <key>`.
    ApiKey(String),
}

impl std::fmt::Debug for ElasticsearchAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ElasticsearchAuth::None => "none",
            ElasticsearchAuth::Basic { .. } => "basic <redacted>",
            ElasticsearchAuth::ApiKey(_) => "api key <redacted>",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ElasticsearchConfig {
    pub base_url: Url,
    /// Index name, pattern or comma-separated list (`logs-*`).
    pub index: String,
    /// ECS names by default.
    pub service_field: String,
    pub level_field: String,
    pub message_field: String,
    /// Lines at most, all services together.
    pub limit: u64,
    pub timeout: Duration,
    pub auth: ElasticsearchAuth,
}

impl ElasticsearchConfig {
    pub fn new(base_url: Url) -> Self {
        ElasticsearchConfig {
            base_url,
            index: "logs-*".into(),
            service_field: "service.name".into(),
            level_field: "log.level".into(),
            message_field: "message".into(),
            limit: DEFAULT_LIMIT,
            timeout: crate::config::DEFAULT_TIMEOUT,
            auth: ElasticsearchAuth::None,
        }
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = vars.url("ELASTICSEARCH_BASE_URL")? else {
            return Ok(None);
        };
        let mut c = ElasticsearchConfig::new(base_url);
        if let Some(index) = vars.get("ELASTICSEARCH_INDEX") {
            // It becomes one path segment: no slashes, no query, nothing to traverse with.
            let ok = index
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.*,:+".contains(ch))
                && !index.starts_with('.')
                && !index.starts_with('_');
            if !ok {
                return Err(error(
                    "ELASTICSEARCH_INDEX",
                    format!("`{index}` is not an index name or pattern"),
                ));
            }
            c.index = index.to_string();
        }
        for (name, slot) in [
            ("ELASTICSEARCH_SERVICE_FIELD", &mut c.service_field),
            ("ELASTICSEARCH_LEVEL_FIELD", &mut c.level_field),
            ("ELASTICSEARCH_MESSAGE_FIELD", &mut c.message_field),
        ] {
            if let Some(v) = vars.get(name) {
                *slot = v.to_string();
            }
        }
        c.limit = vars.number("ELASTICSEARCH_LIMIT", DEFAULT_LIMIT, (1, 10_000))?;
        c.timeout = vars.timeout()?;
        c.auth =
            match (
                vars.get("ELASTICSEARCH_API_KEY"),
                vars.get("ELASTICSEARCH_USERNAME"),
                vars.get("ELASTICSEARCH_PASSWORD"),
            ) {
                (Some(_), Some(_), _) => return Err(error(
                    "ELASTICSEARCH_API_KEY",
                    "set either ELASTICSEARCH_API_KEY or ELASTICSEARCH_USERNAME/PASSWORD, not both",
                )),
                (Some(key), None, _) => ElasticsearchAuth::ApiKey(key.to_string()),
                (None, Some(u), Some(p)) => ElasticsearchAuth::Basic {
                    username: u.to_string(),
                    password: p.to_string(),
                },
                (None, Some(_), None) => {
                    return Err(error(
                        "ELASTICSEARCH_PASSWORD",
                        "ELASTICSEARCH_USERNAME is set without a password",
                    ))
                }
                (None, None, Some(_)) => {
                    return Err(error(
                        "ELASTICSEARCH_USERNAME",
                        "ELASTICSEARCH_PASSWORD is set without a username",
                    ))
                }
                (None, None, None) => ElasticsearchAuth::None,
            };
        Ok(Some(c))
    }
}

pub struct ElasticsearchSource {
    config: ElasticsearchConfig,
    caller: Caller,
}

impl std::fmt::Debug for ElasticsearchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSource")
            .field("base_url", &self.config.base_url.as_str())
            .field("index", &self.config.index)
            .field("auth", &self.config.auth)
            .finish()
    }
}

#[derive(Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    #[serde(default)]
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(default, rename = "_source")]
    source: Value,
}

/// A field of `_source` by its dotted name: a literal `"service.name"` key or nested objects.
fn field<'a>(source: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = source.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    field(source.get(head)?, rest)
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        // epoch_millis
        Value::Number(n) => Utc.timestamp_millis_opt(n.as_i64()?).single(),
        _ => None,
    }
}

impl ElasticsearchSource {
    pub fn new(config: ElasticsearchConfig) -> Result<Self, ConfigError> {
        let caller = Caller::new("elasticsearch", config.timeout)
            .map_err(|e| error("ELASTICSEARCH_BASE_URL", e))?;
        Ok(ElasticsearchSource { config, caller })
    }

    /// The query DSL body: service names travel as JSON strings, never as query syntax.
    pub fn search_body(&self, services: &[String], query: &EvidenceQuery) -> Value {
        let c = &self.config;
        let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        json!({
            "size": c.limit,
            "track_total_hits": false,
            "sort": [{ TIMESTAMP_FIELD: { "order": "desc" } }],
            "_source": [TIMESTAMP_FIELD, c.service_field, c.level_field, c.message_field],
            "query": { "bool": { "filter": [
                { "range": { TIMESTAMP_FIELD: {
                    "gte": rfc3339(query.window.start),
                    "lte": rfc3339(query.window.end),
                    "format": "strict_date_optional_time"
                } } },
                { "terms": { c.service_field.clone(): services } },
                { "terms": { c.level_field.clone(): PROBLEM_LEVELS } }
            ] } }
        })
    }
}

#[async_trait]
impl LogSource for ElasticsearchSource {
    fn name(&self) -> String {
        "elasticsearch".into()
    }

    async fn logs(&self, query: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        let services = crate::services_for(query);
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let c = &self.config;
        let url = endpoint(&c.base_url, &[&c.index, "_search"]);
        let mut request = self
            .caller
            .client
            .post(url)
            .json(&self.search_body(&services, query));
        request = match &c.auth {
            ElasticsearchAuth::None => request,
            ElasticsearchAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            ElasticsearchAuth::ApiKey(key) => {
                request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"))
            }
        };
        let reply = self.caller.call(request).await?;
        if !reply.status.is_success() {
            // `{"error": {"type": "index_not_found_exception", "reason": "..."}, "status": 404}`
            let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
            let detail = parsed.as_ref().and_then(|v| v.get("error")).map(|e| {
                format!(
                    "{}: {}",
                    e.get("type").and_then(Value::as_str).unwrap_or("error"),
                    e.get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason")
                )
            });
            return Err(match detail {
                Some(d) => Failure::Unavailable(format!(
                    "elasticsearch: search of `{}` failed: HTTP {}: {d}",
                    c.index,
                    reply.status.as_u16()
                )),
                None => self.caller.status_failure(&reply, "search failed"),
            }
            .into());
        }
        let body: SearchResponse = self.caller.json(&reply)?;
        let mut lines = Vec::new();
        for hit in body.hits.hits {
            let s = &hit.source;
            let Some(at) = field(s, TIMESTAMP_FIELD).and_then(timestamp) else {
                return Err(SourceError::BadResponse(format!(
                    "elasticsearch: a hit has no readable {TIMESTAMP_FIELD}"
                )));
            };
            let Some(message) = field(s, &c.message_field).and_then(Value::as_str) else {
                continue;
            };
            let service = field(s, &c.service_field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| services[0].clone());
            let level = field(s, &c.level_field)
                .and_then(Value::as_str)
                .and_then(LogLevel::parse)
                .unwrap_or_else(|| level_of_line(message));
            lines.push(LogLine {
                timestamp: at,
                service,
                level,
                message: cap_line(message),
            });
        }
        lines.sort_by_key(|l| l.timestamp);
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_dotted_or_nested() {
        let nested = json!({"service": {"name": "a"}});
        let dotted = json!({"service.name": "b"});
        assert_eq!(field(&nested, "service.name"), Some(&json!("a")));
        assert_eq!(field(&dotted, "service.name"), Some(&json!("b")));
        assert_eq!(field(&dotted, "log.level"), None);
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_millis() {
        let a = timestamp(&json!("2024-03-12T14:07:30.000Z")).unwrap();
        let b = timestamp(&json!(1_710_252_450_000i64)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_index_must_be_one_path_segment() {
        for bad in ["../x", "logs/_delete", "a b", "_all"] {
            let vars: std::collections::HashMap<String, String> = [
                (
                    "ELASTICSEARCH_BASE_URL".to_string(),
                    "http://es:9200".to_string(),
                ),
                ("ELASTICSEARCH_INDEX".to_string(), bad.to_string()),
            ]
            .into();
            assert_eq!(
                ElasticsearchConfig::from_vars(&Vars(&vars))
                    .unwrap_err()
                    .name,
                "ELASTICSEARCH_INDEX",
                "{bad}"
            );
        }
    }
}

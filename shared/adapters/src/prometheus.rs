//! Metrics from Prometheus' HTTP API (`GET /api/v1/query_range`): for each service, a few
//! signals over the evidence window and the same window a week earlier as the baseline.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use iras_core::config::ConfigError;
use iras_core::{EvidenceQuery, MetricSeries, MetricSource, SourceError};
use reqwest::Url;
use serde::Deserialize;

use crate::client::{Caller, Failure};
use crate::config::{endpoint_path, error, Vars};
use crate::escape::quoted_string_body;

/// Points per series at most (about): the step grows with the window.
pub const MAX_POINTS: i64 = 120;
/// The baseline is the same window this long before.
pub const BASELINE_OFFSET_SECONDS: i64 = 7 * 24 * 3600;
/// Steps a window is read at: whole minutes and hours, so samples line up across queries.
const STEPS: [i64; 12] = [
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
/// Requests in flight at once against one Prometheus.
const CONCURRENCY: usize = 8;

/// One signal: a PromQL template with a `{service}` placeholder (replaced by the escaped
/// service name, inside the template's own quotes) and optionally `{offset}` (replaced by
/// ` offset 7d` for the baseline, by nothing for the window).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The series name the analyst reads (`error_rate`, `latency_p99`, ...).
    pub name: String,
    pub unit: String,
    pub query: String,
}

impl Signal {
    pub fn new(name: &str, unit: &str, query: &str) -> Self {
        Signal {
            name: name.into(),
            unit: unit.into(),
            query: query.into(),
        }
    }

    /// The PromQL for one service; `baseline` adds the week-earlier offset where the template
    /// has an `{offset}` placeholder.
    pub fn render(&self, service: &str, baseline: bool) -> String {
        let offset = if baseline { " offset 7d" } else { "" };
        self.query
            .replace("{service}", &quoted_string_body(service))
            .replace("{offset}", offset)
    }

    fn has_offset(&self) -> bool {
        self.query.contains("{offset}")
    }
}

/// Conventional names: `http_requests_total{code}` and `http_request_duration_seconds` from
/// the Prometheus client libraries, cAdvisor's `container_*` for resources.
pub fn default_signals() -> Vec<Signal> {
    vec![
        Signal::new(
            "error_rate",
            "ratio",
            r#"sum(rate(http_requests_total{service="{service}",code=~"5.."}[5m]{offset})) / sum(rate(http_requests_total{service="{service}"}[5m]{offset}))"#,
        ),
        Signal::new(
            "latency_p50",
            "s",
            r#"histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{service="{service}"}[5m]{offset})))"#,
        ),
        Signal::new(
            "latency_p99",
            "s",
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="{service}"}[5m]{offset})))"#,
        ),
        Signal::new(
            "request_rate",
            "req/s",
            r#"sum(rate(http_requests_total{service="{service}"}[5m]{offset}))"#,
        ),
        Signal::new(
            "cpu_usage_cores",
            "cores",
            r#"sum(rate(container_cpu_usage_seconds_total{container="{service}"}[5m]{offset}))"#,
        ),
        Signal::new(
            "memory_working_set_bytes",
            "bytes",
            r#"sum(container_memory_working_set_bytes{container="{service}"}{offset})"#,
        ),
    ]
}

#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub base_url: Url,
    pub signals: Vec<Signal>,
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer` (managed Prometheus, a proxy in front of it).
    pub bearer_token: Option<String>,
}

impl PrometheusConfig {
    pub fn new(base_url: Url) -> Self {
        PrometheusConfig {
            base_url,
            signals: default_signals(),
            timeout: crate::config::DEFAULT_TIMEOUT,
            bearer_token: None,
        }
    }

    /// `PROMETHEUS_BASE_URL` (unset: `None`), `PROMETHEUS_BEARER_TOKEN`,
    /// `PROMETHEUS_QUERY_<NAME>` (replaces the default signal `<name>`, lowercased, adds a new
    /// one, or with `off` drops it) and `PROMETHEUS_UNIT_<NAME>`.
    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = vars.url("PROMETHEUS_BASE_URL")? else {
            return Ok(None);
        };
        let mut config = PrometheusConfig::new(base_url);
        config.timeout = vars.timeout()?;
        config.bearer_token = vars.get("PROMETHEUS_BEARER_TOKEN").map(str::to_string);
        let mut overrides: Vec<(&String, &String)> = vars
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("PROMETHEUS_QUERY_"))
            .collect();
        overrides.sort();
        for (key, value) in overrides {
            let name = key["PROMETHEUS_QUERY_".len()..].to_ascii_lowercase();
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(error(
                    key,
                    "the signal name after PROMETHEUS_QUERY_ must be letters, digits and _",
                ));
            }
            if value.eq_ignore_ascii_case("off") {
                config.signals.retain(|s| s.name != name);
                continue;
            }
            if !value.contains("{service}") {
                return Err(error(
                    key,
                    "the query must contain the {service} placeholder (inside quotes, e.g. service=\"{service}\")",
                ));
            }
            match config.signals.iter_mut().find(|s| s.name == name) {
                Some(s) => s.query = value.to_string(),
                None => config.signals.push(Signal::new(&name, "", value)),
            }
        }
        // `PROMETHEUS_UNIT_<NAME>`: the unit the analyst reads with the series (`ratio`, `s`).
        for signal in config.signals.iter_mut() {
            if let Some(unit) = vars.get(&format!(
                "PROMETHEUS_UNIT_{}",
                signal.name.to_ascii_uppercase()
            )) {
                signal.unit = unit.to_string();
            }
        }
        Ok(Some(config))
    }
}

pub struct PrometheusSource {
    config: PrometheusConfig,
    caller: Caller,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("base_url", &self.config.base_url.as_str())
            .field(
                "signals",
                &self
                    .config
                    .signals
                    .iter()
                    .map(|s| &s.name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The range a window is read at: aligned to the step so repeated queries hit the same
/// samples (and Prometheus' cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

pub fn range_for(start: i64, end: i64) -> Range {
    let span = (end - start).max(1);
    let wanted = (span + MAX_POINTS - 1) / MAX_POINTS;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| *s >= wanted)
        .unwrap_or(((wanted + 86399) / 86400) * 86400);
    Range {
        start: start.div_euclid(step) * step,
        end: (end + step - 1).div_euclid(step) * step,
        step,
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<MatrixData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct MatrixData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Prometheus writes sample values as strings; `NaN` (a ratio over no requests) and the
/// infinities are missing samples, not numbers.
fn sample(value: &str) -> Result<Option<f64>, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("sample value `{value}` is not a number"))?;
    Ok(v.is_finite().then_some(v))
}

type Points = Vec<(i64, Option<f64>)>;

impl PrometheusSource {
    pub fn new(config: PrometheusConfig) -> Result<Self, ConfigError> {
        let caller = Caller::new("prometheus", config.timeout)
            .map_err(|e| error("PROMETHEUS_BASE_URL", e))?;
        Ok(PrometheusSource { config, caller })
    }

    async fn query_range(
        &self,
        promql: &str,
        range: Range,
        what: &str,
    ) -> Result<Vec<(BTreeMap<String, String>, Points)>, Failure> {
        let url = endpoint_path(&self.config.base_url, "api/v1/query_range");
        let timeout = format!("{}s", self.config.timeout.as_secs().max(1));
        let mut request = self.caller.client.get(url).query(&[
            ("query", promql),
            ("start", &range.start.to_string()),
            ("end", &range.end.to_string()),
            ("step", &format!("{}s", range.step)),
            ("timeout", &timeout),
        ]);
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        }
        let reply = self.caller.call(request).await?;
        // Errors come as JSON with errorType (400 bad_data, 422 execution, 503 timeout); a
        // proxy in front may answer with anything.
        let parsed: Result<ApiResponse, _> = self.caller.json(&reply);
        let body = match parsed {
            Ok(b) => b,
            Err(_) if !reply.status.is_success() => {
                return Err(self.caller.status_failure(&reply, what))
            }
            Err(e) => return Err(e),
        };
        if body.status != "success" {
            return Err(Failure::Unavailable(format!(
                "prometheus: {what}: {} ({}): {}",
                body.error_type.as_deref().unwrap_or("error"),
                reply.status.as_u16(),
                body.error.as_deref().unwrap_or("no detail")
            )));
        }
        if !reply.status.is_success() {
            return Err(self.caller.status_failure(&reply, what));
        }
        let data = body.data.ok_or_else(|| {
            Failure::BadResponse(format!("prometheus: {what}: success without data"))
        })?;
        if data.result_type != "matrix" {
            return Err(Failure::BadResponse(format!(
                "prometheus: {what}: expected a matrix, got `{}`",
                data.result_type
            )));
        }
        data.result
            .into_iter()
            .map(|s| {
                let mut labels = s.metric;
                labels.remove("__name__");
                let points = s
                    .values
                    .into_iter()
                    .map(|(t, v)| Ok((t.round() as i64, sample(&v)?)))
                    .collect::<Result<Points, String>>()
                    .map_err(|e| Failure::BadResponse(format!("prometheus: {what}: {e}")))?;
                Ok((labels, points))
            })
            .collect()
    }

    /// One signal of one service: the window, and the week before as its baseline.
    async fn signal(
        &self,
        service: &str,
        signal: &Signal,
        query: &EvidenceQuery,
    ) -> Result<Vec<MetricSeries>, Failure> {
        let (start, end) = (query.window.start.timestamp(), query.window.end.timestamp());
        let range = range_for(start, end);
        let what = format!("{} of {service}", signal.name);
        let current = self
            .query_range(&signal.render(service, false), range, &what)
            .await?;
        // With `{offset}` Prometheus answers at this window's timestamps; without it we read
        // the earlier range itself. Either way the baseline is stored at its own times.
        let week = BASELINE_OFFSET_SECONDS;
        let baseline = if signal.has_offset() {
            self.query_range(&signal.render(service, true), range, &what)
                .await?
                .into_iter()
                .map(|(l, p)| (l, p.into_iter().map(|(t, v)| (t - week, v)).collect()))
                .collect()
        } else {
            let earlier = Range {
                start: range.start - week,
                end: range.end - week,
                step: range.step,
            };
            self.query_range(&signal.render(service, false), earlier, &what)
                .await?
        };
        let in_window = |points: Points, from: i64, to: i64| -> Points {
            points
                .into_iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .collect()
        };
        let mut baselines: HashMap<BTreeMap<String, String>, Points> =
            baseline.into_iter().collect();
        let single = current.len() == 1;
        let mut out = Vec::new();
        for (labels, points) in current {
            let points = in_window(points, start, end);
            if points.iter().all(|(_, v)| v.is_none()) {
                continue;
            }
            // Templates should aggregate to one series per service; if one does not, each
            // series keeps its labels in its name rather than being silently merged.
            let base = match baselines.remove(&labels) {
                Some(b) => b,
                None if single && baselines.len() == 1 => {
                    baselines.drain().next().map(|(_, b)| b).unwrap_or_default()
                }
                None => Vec::new(),
            };
            let name = if single {
                signal.name.clone()
            } else {
                let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}}", signal.name, parts.join(","))
            };
            out.push(MetricSeries {
                service: service.to_string(),
                name,
                unit: signal.unit.clone(),
                points,
                baseline: in_window(base, start - week, end - week),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn name(&self) -> String {
        "prometheus".into()
    }

    async fn metrics(&self, query: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError> {
        let services = crate::services_for(query);
        // Owned jobs: a stream of borrowed items trips the Send check of async_trait.
        let jobs: Vec<(String, usize)> = services
            .iter()
            .flat_map(|s| (0..self.config.signals.len()).map(move |i| (s.clone(), i)))
            .collect();
        let results: Vec<Vec<MetricSeries>> = stream::iter(jobs)
            .map(|(service, i)| async move {
                self.signal(&service, &self.config.signals[i], query).await
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_has_at_most_about_120_points() {
        for minutes in [1, 30, 45, 90, 180, 600, 1440, 10_000] {
            let r = range_for(1_710_250_650, 1_710_250_650 + minutes * 60);
            assert!(
                (r.end - r.start) / r.step <= MAX_POINTS + 2,
                "{minutes} min: {r:?}"
            );
            assert_eq!(r.start % r.step, 0);
            assert!(r.start <= 1_710_250_650);
        }
        assert_eq!(range_for(0, 45 * 60).step, 60);
    }

    #[test]
    fn samples_map_nan_and_infinities_to_missing() {
        assert_eq!(sample("0.25"), Ok(Some(0.25)));
        assert_eq!(sample("NaN"), Ok(None));
        assert_eq!(sample("+Inf"), Ok(None));
        assert!(sample("lots").is_err());
    }

    #[test]
    fn templates_take_the_escaped_service_and_the_offset() {
        let s = Signal::new("x", "", r#"up{service="{service}"}[5m]{offset}"#);
        assert_eq!(
            s.render(r#"pay"} or vector(1) #"#, false),
            r#"up{service="pay\"} or vector(1) #"}[5m]"#
        );
        assert_eq!(s.render("a", true), r#"up{service="a"}[5m] offset 7d"#);
    }

    #[test]
    fn query_variables_replace_add_and_drop_signals() {
        let vars: HashMap<String, String> = [
            ("PROMETHEUS_BASE_URL", "http://prom:9090"),
            (
                "PROMETHEUS_QUERY_ERROR_RATE",
                r#"my_errors{app="{service}"}"#,
            ),
            (
                "PROMETHEUS_QUERY_JVM_HEAP_USED_RATIO",
                r#"heap{app="{service}"}"#,
            ),
            ("PROMETHEUS_QUERY_LATENCY_P50", "off"),
            ("PROMETHEUS_UNIT_JVM_HEAP_USED_RATIO", "ratio"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = PrometheusConfig::from_vars(&Vars(&vars)).unwrap().unwrap();
        let names: Vec<&str> = c.signals.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"jvm_heap_used_ratio"));
        let heap = c
            .signals
            .iter()
            .find(|s| s.name == "jvm_heap_used_ratio")
            .unwrap();
        assert_eq!(heap.unit, "ratio");
        assert!(!names.contains(&"latency_p50"));
        assert_eq!(c.signals[0].query, r#"my_errors{app="{service}"}"#);

        let bad: HashMap<String, String> = [
            (
                "PROMETHEUS_BASE_URL".to_string(),
                "http://prom:9090".to_string(),
            ),
            ("PROMETHEUS_QUERY_ERROR_RATE".to_string(), "up".to_string()),
        ]
        .into();
        let e = PrometheusConfig::from_vars(&Vars(&bad)).unwrap_err();
        assert_eq!(e.name, "PROMETHEUS_QUERY_ERROR_RATE");
    }
}

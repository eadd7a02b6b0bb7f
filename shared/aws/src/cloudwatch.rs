//! CloudWatch evidence: problem log lines through Logs Insights ([`CloudWatchLogs`]) and
//! metric series through `GetMetricData` ([`CloudWatchMetrics`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy, StatusCode,
};
use aws_sdk_cloudwatchlogs::types::{QueryStatus, ResultField};
use aws_smithy_types::timeout::TimeoutConfig;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use iras_core::config::ConfigError;
use iras_core::{EvidenceQuery, LogLine, LogSource, MetricSeries, MetricSource, SourceError};

use iras_core::loglines::{cap_line, level_of_line};

use crate::evidence::{error, sdk_failure, services_for, ServiceMap, Vars};

/// Lines matching this (case-insensitive) are the ones worth reading in an incident (the
/// same pattern as the Loki and Elasticsearch sources).
pub const DEFAULT_LINE_FILTER: &str = iras_core::loglines::DEFAULT_PROBLEM_PATTERN;
pub const DEFAULT_LOGS_LIMIT: u64 = 200;
/// Logs Insights' own ceiling for `limit`.
pub const MAX_LOGS_LIMIT: u64 = 10_000;
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries in flight at once: Logs Insights allows a few tens of concurrent queries per
/// account, shared with the operators' own dashboards.
const LOG_CONCURRENCY: usize = 4;

/// A log group name as CloudWatch accepts it (`[.\-_/#A-Za-z0-9]{1,512}`): anything else can
/// never reach the API.
pub fn is_log_group_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c))
}

/// A Logs Insights field name written bare (`service`, `kubernetes.labels.app`, `@log`).
fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@".contains(c))
        && !s.starts_with('.')
}

/// The body of a double-quoted Logs Insights string: `\` and `"` escaped, control characters
/// (which no service name has) turned into spaces, so the value can never close the string.
pub fn quoted_string_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A regular expression as a Logs Insights `/.../` literal: an unescaped `/` would end it.
fn regex_literal(pattern: &str) -> String {
    let mut out = String::from("/");
    let mut escaped = false;
    for c in pattern.chars() {
        if c == '/' && !escaped {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    if escaped {
        // A trailing lone backslash would escape the closing slash.
        out.push('\\');
    }
    out.push('/');
    out
}

#[derive(Debug, Clone)]
pub struct CloudWatchLogsConfig {
    pub groups: ServiceMap,
    /// Regular expression a line must match; `None` keeps every line.
    pub line_filter: Option<String>,
    /// For groups several services share: the field naming the service.
    pub service_field: Option<String>,
    pub limit: u64,
    pub query_timeout: Duration,
    pub request_timeout: Duration,
}

impl CloudWatchLogsConfig {
    pub fn new(groups: ServiceMap) -> Self {
        CloudWatchLogsConfig {
            groups,
            line_filter: Some(DEFAULT_LINE_FILTER.into()),
            service_field: None,
            limit: DEFAULT_LOGS_LIMIT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            request_timeout: crate::evidence::DEFAULT_TIMEOUT,
        }
    }

    /// `CLOUDWATCH_LOG_GROUPS` (unset: `None`), `CLOUDWATCH_LOG_FILTER`,
    /// `CLOUDWATCH_LOG_SERVICE_FIELD`, `CLOUDWATCH_LOGS_LIMIT`,
    /// `CLOUDWATCH_QUERY_TIMEOUT_SECONDS`: see [`crate::aws_evidence_from_vars`].
    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let Some(groups) = vars.get("CLOUDWATCH_LOG_GROUPS") else {
            return Ok(None);
        };
        let groups = ServiceMap::parse(groups, is_log_group_name, "log group")
            .map_err(|p| error("CLOUDWATCH_LOG_GROUPS", p))?;
        let mut c = CloudWatchLogsConfig::new(groups);
        if let Some(f) = vars.get("CLOUDWATCH_LOG_FILTER") {
            if f.eq_ignore_ascii_case("off") {
                c.line_filter = None;
            } else if f.chars().any(char::is_control) {
                return Err(error(
                    "CLOUDWATCH_LOG_FILTER",
                    "the regular expression must be one line",
                ));
            } else {
                c.line_filter = Some(f.to_string());
            }
        }
        if let Some(field) = vars.get("CLOUDWATCH_LOG_SERVICE_FIELD") {
            if !is_field_name(field) {
                return Err(error(
                    "CLOUDWATCH_LOG_SERVICE_FIELD",
                    format!("`{field}` is not a field name (letters, digits, _ . @)"),
                ));
            }
            c.service_field = Some(field.to_string());
        }
        c.limit = vars.number(
            "CLOUDWATCH_LOGS_LIMIT",
            DEFAULT_LOGS_LIMIT,
            (1, MAX_LOGS_LIMIT),
        )?;
        c.query_timeout = Duration::from_secs(vars.number(
            "CLOUDWATCH_QUERY_TIMEOUT_SECONDS",
            DEFAULT_QUERY_TIMEOUT.as_secs(),
            (1, 600),
        )?);
        c.request_timeout = vars.timeout()?;
        Ok(Some(c))
    }
}

fn timeouts(request_timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(request_timeout)
        .connect_timeout(request_timeout)
        .build()
}

pub struct CloudWatchLogs {
    config: CloudWatchLogsConfig,
    client: aws_sdk_cloudwatchlogs::Client,
}

impl std::fmt::Debug for CloudWatchLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchLogs")
            .field("config", &self.config)
            .finish()
    }
}

/// How a finished Logs Insights query ended.
fn query_outcome(status: Option<&QueryStatus>) -> Result<bool, String> {
    match status {
        Some(QueryStatus::Complete) => Ok(true),
        Some(QueryStatus::Running | QueryStatus::Scheduled) | None => Ok(false),
        Some(QueryStatus::Failed) => Err("the query failed".into()),
        Some(QueryStatus::Cancelled) => Err("the query was cancelled".into()),
        Some(QueryStatus::Timeout) => Err("the query timed out in Logs Insights".into()),
        Some(other) => Err(format!("the query ended as {}", other.as_str())),
    }
}

/// `@timestamp` as Logs Insights writes it (`2024-03-12 13:45:01.123`, UTC), or as epoch
/// milliseconds (what moto writes).
fn parse_timestamp(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&t));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    v.parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

/// One result row as a log line; rows without a message (a `stats` query) are not lines.
fn row_to_line(row: &[ResultField], service: &str) -> Result<Option<LogLine>, String> {
    let get = |name: &str| {
        row.iter()
            .find(|f| f.field() == Some(name))
            .and_then(|f| f.value())
    };
    let Some(message) = get("@message") else {
        return Ok(None);
    };
    let ts = get("@timestamp").ok_or("a row has no @timestamp")?;
    let timestamp =
        parse_timestamp(ts).ok_or_else(|| format!("@timestamp `{ts}` is not a time"))?;
    Ok(Some(LogLine {
        timestamp,
        service: service.to_string(),
        level: level_of_line(message),
        message: cap_line(message),
    }))
}

impl CloudWatchLogs {
    pub fn new(sdk: &SdkConfig, config: CloudWatchLogsConfig) -> Self {
        let client = aws_sdk_cloudwatchlogs::Client::from_conf(
            aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                .timeout_config(timeouts(config.request_timeout))
                .build(),
        );
        CloudWatchLogs { config, client }
    }

    /// The Logs Insights query for one service. The service never appears in it unless the
    /// groups are shared (`CLOUDWATCH_LOG_SERVICE_FIELD`), and then only inside a quoted,
    /// escaped string: a name cannot add a command or end the filter.
    pub fn query_string(&self, service: &str) -> String {
        let mut q = String::from("fields @timestamp, @message, @logStream, @log");
        if let Some(pattern) = &self.config.line_filter {
            q.push_str(&format!(
                "\n| filter @message like {}",
                regex_literal(pattern)
            ));
        }
        if let Some(field) = &self.config.service_field {
            q.push_str(&format!(
                "\n| filter {field} = \"{}\"",
                quoted_string_body(service)
            ));
        }
        q.push_str(&format!(
            "\n| sort @timestamp desc\n| limit {}",
            self.config.limit
        ));
        q
    }

    async fn service_logs(
        &self,
        service: &str,
        query: &EvidenceQuery,
    ) -> Result<Vec<LogLine>, SourceError> {
        let groups = self.config.groups.resolve(service, is_log_group_name);
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        // Escaped as it is, a name with a quote, a backslash or a line break is not sent at
        // all when it would go into the query: no service is called that, and it keeps the
        // query safe whatever Logs Insights makes of an escape.
        if self.config.service_field.is_some()
            && service
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            tracing::warn!(
                service,
                "service name not usable in a Logs Insights filter: skipped"
            );
            return Ok(Vec::new());
        }
        let what = format!("logs of {service} in {}", groups.join(", "));
        let timeout = self.config.request_timeout;
        let started = self
            .client
            .start_query()
            .set_log_group_names(Some(groups.clone()))
            .start_time(query.window.start.timestamp())
            .end_time(query.window.end.timestamp())
            .query_string(self.query_string(service))
            .limit(self.config.limit as i32)
            .send()
            .await
            .map_err(|e| sdk_failure("cloudwatch logs", &what, e, timeout))?;
        let query_id = started.query_id().ok_or_else(|| {
            SourceError::BadResponse(format!("cloudwatch logs: {what}: StartQuery gave no id"))
        })?;
        let deadline = Instant::now() + self.config.query_timeout;
        let mut pause = Duration::from_millis(200);
        loop {
            let out = self
                .client
                .get_query_results()
                .query_id(query_id)
                .send()
                .await
                .map_err(|e| sdk_failure("cloudwatch logs", &what, e, timeout))?;
            let done = query_outcome(out.status())
                .map_err(|e| SourceError::Unavailable(format!("cloudwatch logs: {what}: {e}")))?;
            if done {
                let mut lines = Vec::new();
                // Bounded twice: by the query's `limit` and here, whatever came back.
                for row in out.results().iter().take(self.config.limit as usize) {
                    if let Some(line) = row_to_line(row, service).map_err(|e| {
                        SourceError::BadResponse(format!("cloudwatch logs: {what}: {e}"))
                    })? {
                        lines.push(line);
                    }
                }
                return Ok(lines);
            }
            if Instant::now() + pause > deadline {
                // Stop it so it does not keep counting against the account's concurrent
                // queries; the answer no longer matters.
                let _ = self.client.stop_query().query_id(query_id).send().await;
                return Err(SourceError::Timeout(
                    self.config.query_timeout.as_millis() as u64
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait]
impl LogSource for CloudWatchLogs {
    fn name(&self) -> String {
        "cloudwatch-logs".into()
    }

    async fn logs(&self, query: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let per_service: Vec<Vec<LogLine>> = stream::iter(services_for(query))
            .map(|s| async move { self.service_logs(&s, query).await })
            .buffered(LOG_CONCURRENCY)
            .try_collect()
            .await?;
        let mut lines: Vec<LogLine> = per_service.into_iter().flatten().collect();
        lines.sort_by_key(|l| l.timestamp);
        Ok(lines)
    }
}

// ---------------------------------------------------------------------------------------
// Metrics

/// The baseline is the same window this long before (as the Prometheus source).
pub const BASELINE_OFFSET_SECONDS: i64 = 7 * 24 * 3600;
/// Points per series at most (about): the period grows with the window.
pub const MAX_POINTS: i64 = 120;
/// Periods a window is read at: whole minutes (CloudWatch's standard resolution) and hours.
const PERIODS: [i64; 12] = [
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
/// `GetMetricData` takes at most 500 queries per request.
const MAX_QUERIES_PER_REQUEST: usize = 500;
/// Pages of one request read at most (each up to 100,800 points).
const MAX_PAGES: usize = 10;

/// Where a dimension's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DimensionValue {
    /// The service name itself.
    Service,
    /// A template with `{service}` (`{service}-prod`).
    Template(String),
    Fixed(String),
}

/// One signal: a CloudWatch metric and statistic, read per service through its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// The series name the analyst reads (`errors`, `duration_p99`, ...).
    pub name: String,
    pub namespace: String,
    pub metric: String,
    pub statistic: String,
    pub dimensions: Vec<(String, DimensionValue)>,
    pub unit: String,
}

impl MetricSpec {
    fn new(name: &str, namespace: &str, metric: &str, stat: &str, dim: &str, unit: &str) -> Self {
        MetricSpec {
            name: name.into(),
            namespace: namespace.into(),
            metric: metric.into(),
            statistic: stat.into(),
            dimensions: vec![(dim.into(), DimensionValue::Service)],
            unit: unit.into(),
        }
    }

    /// The dimensions for one service; `None` when the service cannot be a dimension value.
    pub fn dimensions_for(&self, service: &str) -> Option<Vec<Dimension>> {
        self.dimensions
            .iter()
            .map(|(name, value)| {
                let v = match value {
                    DimensionValue::Service => service.to_string(),
                    DimensionValue::Template(t) => t.replace("{service}", service),
                    DimensionValue::Fixed(v) => v.clone(),
                };
                // CloudWatch's limits on a dimension value.
                if v.is_empty() || v.chars().count() > 1024 || v.chars().any(char::is_control) {
                    return None;
                }
                Some(Dimension::builder().name(name).value(v).build())
            })
            .collect()
    }
}

/// `lambda`: by `FunctionName`, the function named after the service.
pub fn lambda_preset() -> Vec<MetricSpec> {
    vec![
        MetricSpec::new(
            "errors",
            "AWS/Lambda",
            "Errors",
            "Sum",
            "FunctionName",
            "count",
        ),
        MetricSpec::new(
            "invocations",
            "AWS/Lambda",
            "Invocations",
            "Sum",
            "FunctionName",
            "count",
        ),
        MetricSpec::new(
            "throttles",
            "AWS/Lambda",
            "Throttles",
            "Sum",
            "FunctionName",
            "count",
        ),
        MetricSpec::new(
            "duration_p99",
            "AWS/Lambda",
            "Duration",
            "p99",
            "FunctionName",
            "ms",
        ),
    ]
}

/// `ecs`: by `ServiceName` within `ClusterName` (both are needed: CloudWatch matches the
/// whole set of dimensions).
pub fn ecs_preset(cluster: &str) -> Vec<MetricSpec> {
    ["CPUUtilization", "MemoryUtilization"]
        .iter()
        .zip(["cpu_utilization", "memory_utilization"])
        .map(|(metric, name)| MetricSpec {
            name: name.into(),
            namespace: "AWS/ECS".into(),
            metric: (*metric).into(),
            statistic: "Average".into(),
            dimensions: vec![
                ("ServiceName".into(), DimensionValue::Service),
                ("ClusterName".into(), DimensionValue::Fixed(cluster.into())),
            ],
            unit: "percent".into(),
        })
        .collect()
}

fn is_statistic(s: &str) -> bool {
    if matches!(
        s,
        "Sum" | "Average" | "Minimum" | "Maximum" | "SampleCount" | "IQM"
    ) {
        return true;
    }
    // Percentiles and trimmed statistics: p99, p99.9, tm90, wm99, tc90, ts90, pr(...) is not
    // supported here.
    ["p", "tm", "wm", "tc", "ts"].iter().any(|prefix| {
        s.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
                && rest
                    .parse::<f64>()
                    .is_ok_and(|v| (0.0..=100.0).contains(&v))
        })
    })
}

/// One `name=Namespace|MetricName|Statistic|Dimensions[|unit]` item.
fn parse_spec(item: &str) -> Result<MetricSpec, String> {
    let (name, rest) = item.split_once('=').ok_or_else(|| {
        format!("`{item}` is neither a preset nor name=Namespace|Metric|Statistic|Dimensions")
    })?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "signal name `{name}` must be lowercase letters, digits and _"
        ));
    }
    let parts: Vec<&str> = rest.split('|').map(str::trim).collect();
    if !(4..=5).contains(&parts.len()) || parts[..4].iter().any(|p| p.is_empty()) {
        return Err(format!(
            "`{item}`: expected name=Namespace|MetricName|Statistic|Dimensions[|unit]"
        ));
    }
    if !is_statistic(parts[2]) {
        return Err(format!(
            "`{}` is not a statistic (Sum, Average, Minimum, Maximum, SampleCount, p99, ...)",
            parts[2]
        ));
    }
    let mut dimensions = Vec::new();
    for d in parts[3].split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (dname, value) = match d.split_once('=') {
            None => (d, DimensionValue::Service),
            Some((n, v)) if v.contains("{service}") => {
                (n, DimensionValue::Template(v.trim().into()))
            }
            Some((n, v)) => (n, DimensionValue::Fixed(v.trim().into())),
        };
        let dname = dname.trim();
        if dname.is_empty() || matches!(&value, DimensionValue::Fixed(v) if v.is_empty()) {
            return Err(format!(
                "dimension `{d}` is not Name, Name=value or Name=..{{service}}.."
            ));
        }
        dimensions.push((dname.to_string(), value));
    }
    if !dimensions
        .iter()
        .any(|(_, v)| !matches!(v, DimensionValue::Fixed(_)))
    {
        return Err(format!(
            "`{item}`: no dimension holds the service (write the dimension's name alone, or Name=..{{service}}..)"
        ));
    }
    Ok(MetricSpec {
        name: name.to_string(),
        namespace: parts[0].to_string(),
        metric: parts[1].to_string(),
        statistic: parts[2].to_string(),
        dimensions,
        unit: parts.get(4).map(|u| u.to_string()).unwrap_or_default(),
    })
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub signals: Vec<MetricSpec>,
    pub request_timeout: Duration,
}

impl MetricsConfig {
    /// `CLOUDWATCH_METRICS` (unset: `None`): see [`crate::aws_evidence_from_vars`].
    pub(crate) fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        const VAR: &str = "CLOUDWATCH_METRICS";
        let Some(v) = vars.get(VAR) else {
            return Ok(None);
        };
        let mut signals: Vec<MetricSpec> = Vec::new();
        for item in v.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let added = match item.to_ascii_lowercase().as_str() {
                "lambda" => lambda_preset(),
                "ecs" => {
                    let cluster = vars.get("ECS_CLUSTER").ok_or_else(|| {
                        error(
                            VAR,
                            "the ecs preset reads the cluster from ECS_CLUSTER, which is unset",
                        )
                    })?;
                    ecs_preset(cluster)
                }
                _ => vec![parse_spec(item).map_err(|p| error(VAR, p))?],
            };
            for s in added {
                // A later item replaces an earlier one of the same name (a preset's signal).
                signals.retain(|x| x.name != s.name);
                signals.push(s);
            }
        }
        if signals.is_empty() {
            return Err(error(VAR, "no signal listed"));
        }
        Ok(Some(MetricsConfig {
            signals,
            request_timeout: vars.timeout()?,
        }))
    }
}

/// The period a window is read at and its bounds aligned to it, so repeated reads cover the
/// same buckets.
pub fn period_for(start: i64, end: i64) -> (i64, i64, i64) {
    let span = (end - start).max(1);
    let wanted = (span + MAX_POINTS - 1) / MAX_POINTS;
    let period = PERIODS
        .iter()
        .copied()
        .find(|p| *p >= wanted)
        .unwrap_or(((wanted + 86399) / 86400) * 86400);
    (
        start.div_euclid(period) * period,
        (end + period - 1).div_euclid(period) * period,
        period,
    )
}

/// The queries for every (service, signal) pair whose dimensions can be built, with ids
/// `m0`, `m1`, ... and what each id stands for.
pub fn plan_queries(
    services: &[String],
    signals: &[MetricSpec],
    period: i64,
) -> Vec<(MetricDataQuery, String, usize)> {
    let mut out = Vec::new();
    for service in services {
        for (i, spec) in signals.iter().enumerate() {
            let Some(dimensions) = spec.dimensions_for(service) else {
                tracing::warn!(service, signal = %spec.name, "service name cannot be a dimension value: skipped");
                continue;
            };
            let id = format!("m{}", out.len());
            let q = MetricDataQuery::builder()
                .id(&id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(&spec.namespace)
                                .metric_name(&spec.metric)
                                .set_dimensions(Some(dimensions))
                                .build(),
                        )
                        .period(period as i32)
                        .stat(&spec.statistic)
                        .build(),
                )
                .return_data(true)
                .build();
            out.push((q, service.clone(), i));
        }
    }
    out
}

type Points = Vec<(i64, Option<f64>)>;

/// Results (possibly split across pages) by query id, ascending; a failed result fails the
/// source with CloudWatch's own message.
pub fn collect_results(
    results: &[MetricDataResult],
    into: &mut HashMap<String, Points>,
) -> Result<(), String> {
    for r in results {
        let id = r.id().unwrap_or_default().to_string();
        match r.status_code() {
            Some(StatusCode::Forbidden) | Some(StatusCode::InternalError) => {
                let why: Vec<&str> = r.messages().iter().filter_map(|m| m.value()).collect();
                return Err(format!(
                    "{} for {}: {}",
                    r.status_code().map(|s| s.as_str()).unwrap_or("error"),
                    r.label().unwrap_or(&id),
                    if why.is_empty() {
                        "no detail".to_string()
                    } else {
                        why.join("; ")
                    }
                ));
            }
            _ => {}
        }
        if r.timestamps().len() != r.values().len() {
            return Err(format!(
                "{id}: {} timestamps for {} values",
                r.timestamps().len(),
                r.values().len()
            ));
        }
        let points = into.entry(id).or_default();
        for (t, v) in r.timestamps().iter().zip(r.values()) {
            points.push((t.secs(), v.is_finite().then_some(*v)));
        }
    }
    for points in into.values_mut() {
        points.sort_by_key(|(t, _)| *t);
        points.dedup_by_key(|(t, _)| *t);
    }
    Ok(())
}

pub struct CloudWatchMetrics {
    config: MetricsConfig,
    client: aws_sdk_cloudwatch::Client,
}

impl std::fmt::Debug for CloudWatchMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchMetrics")
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

impl CloudWatchMetrics {
    pub fn new(sdk: &SdkConfig, config: MetricsConfig) -> Self {
        let client = aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(sdk)
                .timeout_config(timeouts(config.request_timeout))
                .build(),
        );
        CloudWatchMetrics { config, client }
    }

    /// Every query over one time range, in requests of at most 500 queries, every page.
    async fn read(
        &self,
        queries: &[MetricDataQuery],
        start: i64,
        end: i64,
        what: &str,
    ) -> Result<HashMap<String, Points>, SourceError> {
        let mut out = HashMap::new();
        for chunk in queries.chunks(MAX_QUERIES_PER_REQUEST) {
            let mut token: Option<String> = None;
            for page in 0.. {
                if page == MAX_PAGES {
                    tracing::warn!(
                        what,
                        "more than {MAX_PAGES} pages of metric data: the rest is left out"
                    );
                    break;
                }
                let reply = self
                    .client
                    .get_metric_data()
                    .set_metric_data_queries(Some(chunk.to_vec()))
                    .start_time(aws_smithy_types::DateTime::from_secs(start))
                    .end_time(aws_smithy_types::DateTime::from_secs(end))
                    .scan_by(ScanBy::TimestampAscending)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_failure("cloudwatch metrics", what, e, self.config.request_timeout)
                    })?;
                collect_results(reply.metric_data_results(), &mut out).map_err(|e| {
                    SourceError::Unavailable(format!("cloudwatch metrics: {what}: {e}"))
                })?;
                match reply.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl MetricSource for CloudWatchMetrics {
    fn name(&self) -> String {
        "cloudwatch-metrics".into()
    }

    async fn metrics(&self, query: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError> {
        let services = services_for(query);
        let (start, end, period) =
            period_for(query.window.start.timestamp(), query.window.end.timestamp());
        let plan = plan_queries(&services, &self.config.signals, period);
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let queries: Vec<MetricDataQuery> = plan.iter().map(|(q, _, _)| q.clone()).collect();
        let week = BASELINE_OFFSET_SECONDS;
        let what = format!(
            "{} signal(s) of {}",
            self.config.signals.len(),
            services.join(", ")
        );
        let mut current = self.read(&queries, start, end, &what).await?;
        let mut baseline = self
            .read(
                &queries,
                start - week,
                end - week,
                &format!("baseline of {what}"),
            )
            .await?;
        let mut out = Vec::new();
        for (q, service, i) in plan {
            let id = q.id().unwrap_or_default();
            let points = current.remove(id).unwrap_or_default();
            // No datapoint at all: the metric does not exist for this service (or it was
            // idle); nothing to compare.
            if points.iter().all(|(_, v)| v.is_none()) {
                continue;
            }
            let spec = &self.config.signals[i];
            out.push(MetricSeries {
                service,
                name: spec.name.clone(),
                unit: spec.unit.clone(),
                points,
                baseline: baseline.remove(id).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iras_core::LogLevel;

    fn logs(config: CloudWatchLogsConfig) -> CloudWatchLogs {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        CloudWatchLogs::new(&sdk, config)
    }

    /// The query's commands as Logs Insights reads them: split on `|` outside quoted strings
    /// and `/regex/` literals, with every quoted string's content dropped. Two queries with the
    /// same shape but different string values give the same commands.
    fn commands(q: &str) -> Vec<String> {
        let (mut out, mut cur) = (Vec::new(), String::new());
        let (mut quote, mut regex, mut escaped) = (false, false, false);
        for c in q.chars() {
            if escaped {
                escaped = false;
                if quote {
                    continue;
                }
            } else if c == '\\' && (quote || regex) {
                escaped = true;
                if quote {
                    continue;
                }
            } else if c == '"' && !regex {
                quote = !quote;
            } else if quote {
                continue;
            } else if c == '/' {
                regex = !regex;
            } else if c == '|' && !regex {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            cur.push(c);
        }
        out.push(cur.trim().to_string());
        if quote || regex {
            out.push("<unterminated literal>".into());
        }
        out
    }

    #[test]
    fn a_service_name_cannot_change_the_logs_insights_query() {
        let mut c = CloudWatchLogsConfig::new(ServiceMap::template("/shared/app"));
        c.service_field = Some("service".into());
        let src = logs(c);
        let plain = src.query_string("checkout");
        assert_eq!(
            plain,
            "fields @timestamp, @message, @logStream, @log\n\
             | filter @message like /(?i)(warn|error|fatal|exception|panic)/\n\
             | filter service = \"checkout\"\n| sort @timestamp desc\n| limit 200"
        );
        for evil in [
            r#"checkout" | limit 1 | fields @message #"#,
            r#"checkout\" or service = "x"#,
            "checkout\n| stats count(*)",
            r#"a/ | display @log /"#,
        ] {
            let q = src.query_string(evil);
            assert_eq!(commands(&q), commands(&plain), "{evil} → {q}");
            // The check can tell: a name with a quote spliced raw changes the commands.
            if evil.contains('"') {
                let raw = plain.replace("\"checkout\"", &format!("\"{evil}\""));
                assert_ne!(commands(&raw), commands(&plain), "{evil}");
            }
        }
        assert!(src
            .query_string(r#"pay" x"#)
            .contains(r#"filter service = "pay\" x""#));
    }

    #[test]
    fn slashes_in_the_line_filter_stay_inside_the_regex() {
        assert_eq!(regex_literal("a/b"), r"/a\/b/");
        assert_eq!(regex_literal(r"a\/b"), r"/a\/b/");
        assert_eq!(regex_literal(r"a\"), r"/a\\/");
        let mut c = CloudWatchLogsConfig::new(ServiceMap::template("/x/{service}"));
        c.line_filter = Some("GET /health| 5\\d\\d".into());
        assert_eq!(commands(&logs(c).query_string("x")).len(), 4);
    }

    #[test]
    fn query_states_end_or_keep_polling() {
        assert_eq!(query_outcome(Some(&QueryStatus::Complete)), Ok(true));
        assert_eq!(query_outcome(Some(&QueryStatus::Running)), Ok(false));
        assert_eq!(query_outcome(Some(&QueryStatus::Scheduled)), Ok(false));
        for s in [
            QueryStatus::Failed,
            QueryStatus::Cancelled,
            QueryStatus::Timeout,
        ] {
            assert!(query_outcome(Some(&s)).is_err());
        }
    }

    #[test]
    fn rows_read_both_timestamp_forms() {
        let f = |k: &str, v: &str| ResultField::builder().field(k).value(v).build();
        let line = row_to_line(
            &[
                f("@timestamp", "2024-03-12 13:45:01.123"),
                f("@message", "[ERROR] 2024-03-12 payment declined"),
                f("@ptr", "x"),
            ],
            "payments",
        )
        .unwrap()
        .unwrap();
        assert_eq!(line.timestamp.timestamp_millis(), 1_710_251_101_123);
        assert_eq!(line.level, LogLevel::Error);
        let moto = row_to_line(
            &[f("@timestamp", "1710251101123"), f("@message", "ok")],
            "payments",
        )
        .unwrap()
        .unwrap();
        assert_eq!(moto.timestamp, line.timestamp);
        assert!(row_to_line(&[f("count(*)", "3")], "p").unwrap().is_none());
        assert!(row_to_line(&[f("@timestamp", "soon"), f("@message", "x")], "p").is_err());
    }

    use iras_core::testing::vars;

    #[test]
    fn metric_specs_take_presets_and_custom_signals() {
        let v = vars(&[
            (
                "CLOUDWATCH_METRICS",
                "lambda; ecs; errors=MyApp|Errors|Sum|Service,Stage=prod|count; lat=MyApp|Latency|p99.9|FunctionName={service}-prod",
            ),
            ("ECS_CLUSTER", "prod"),
        ]);
        let c = MetricsConfig::from_vars(&Vars(&v)).unwrap().unwrap();
        let names: Vec<&str> = c.signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "invocations",
                "throttles",
                "duration_p99",
                "cpu_utilization",
                "memory_utilization",
                "errors",
                "lat"
            ]
        );
        let errors = c.signals.iter().find(|s| s.name == "errors").unwrap();
        assert_eq!(errors.namespace, "MyApp");
        let dims = errors.dimensions_for("checkout").unwrap();
        assert_eq!(
            dims.iter()
                .map(|d| (d.name().unwrap(), d.value().unwrap()))
                .collect::<Vec<_>>(),
            [("Service", "checkout"), ("Stage", "prod")]
        );
        let lat = c.signals.iter().find(|s| s.name == "lat").unwrap();
        assert_eq!(
            lat.dimensions_for("pay").unwrap()[0].value(),
            Some("pay-prod")
        );

        for bad in [
            "ecs",
            "errors=MyApp|Errors|Sum",
            "errors=MyApp|Errors|Total|Service",
            "errors=MyApp|Errors|Sum|Stage=prod",
            "Errors=MyApp|Errors|Sum|Service",
            "prometheus",
        ] {
            let e =
                MetricsConfig::from_vars(&Vars(&vars(&[("CLOUDWATCH_METRICS", bad)]))).unwrap_err();
            assert_eq!(e.name, "CLOUDWATCH_METRICS", "{bad}");
        }
    }

    #[test]
    fn queries_are_planned_per_service_and_signal() {
        let plan = plan_queries(&["checkout".into(), "pay\nx".into()], &lambda_preset(), 60);
        // The name with a newline cannot be a dimension value: only checkout's four.
        assert_eq!(plan.len(), 4);
        let (q, service, i) = &plan[3];
        assert_eq!((q.id(), service.as_str(), *i), (Some("m3"), "checkout", 3));
        let stat = q.metric_stat().unwrap();
        assert_eq!(stat.stat(), Some("p99"));
        assert_eq!(stat.period(), Some(60));
        let m = stat.metric().unwrap();
        assert_eq!(m.metric_name(), Some("Duration"));
        assert_eq!(m.dimensions()[0].value(), Some("checkout"));
    }

    #[test]
    fn periods_keep_a_window_to_about_120_points() {
        for minutes in [1, 30, 45, 180, 1440, 10_000] {
            let (s, e, p) = period_for(1_710_250_650, 1_710_250_650 + minutes * 60);
            assert!((e - s) / p <= MAX_POINTS + 2, "{minutes} min");
            assert_eq!((s % p, p % 60), (0, 0));
        }
    }

    #[test]
    fn results_merge_pages_and_failures_name_cloudwatchs_reason() {
        let t = aws_smithy_types::DateTime::from_secs;
        let page1 = MetricDataResult::builder()
            .id("m0")
            .timestamps(t(120))
            .values(2.0)
            .status_code(StatusCode::PartialData)
            .build();
        let page2 = MetricDataResult::builder()
            .id("m0")
            .timestamps(t(60))
            .values(f64::NAN)
            .timestamps(t(180))
            .values(3.0)
            .status_code(StatusCode::Complete)
            .build();
        let mut out = HashMap::new();
        collect_results(&[page1], &mut out).unwrap();
        collect_results(&[page2], &mut out).unwrap();
        assert_eq!(
            out["m0"],
            vec![(60, None), (120, Some(2.0)), (180, Some(3.0))]
        );

        let denied = MetricDataResult::builder()
            .id("m1")
            .label("Errors")
            .status_code(StatusCode::Forbidden)
            .messages(
                aws_sdk_cloudwatch::types::MessageData::builder()
                    .code("Forbidden")
                    .value("not authorized for namespace MyApp")
                    .build(),
            )
            .build();
        let e = collect_results(&[denied], &mut HashMap::new()).unwrap_err();
        assert!(
            e.contains("Forbidden for Errors: not authorized for namespace MyApp"),
            "{e}"
        );
    }
}

//! `iras-scenario/1`: one incident frozen in time, and evidence sources that serve it.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use iras_core::*;

pub const FORMAT: &str = "iras-scenario/1";

/// A decompressed scenario larger than this is refused: a small `.gz` can expand without bound.
const MAX_SCENARIO_BYTES: u64 = 512 * 1024 * 1024;

/// A scenario file by its name: `*.json`, or `*.json.gz` for larger sets kept compressed.
pub fn is_scenario_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".json") || name.ends_with(".json.gz")
}

/// The text of a scenario file, gunzipped when its name ends in `.gz`.
pub fn read_scenario_text(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let gz = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("gz"));
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut text = String::new();
    reader
        .by_ref()
        .take(MAX_SCENARIO_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB once decompressed",
                MAX_SCENARIO_BYTES >> 20
            ),
        ));
    }
    Ok(text)
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub id: String,
    pub description: String,
    pub alert: Alert,
    pub topology: Vec<ServiceEdge>,
    pub metrics: Vec<MetricSeries>,
    pub logs: Vec<LogLine>,
    pub deployments: Vec<Deployment>,
    /// How series read once a remediation is applied: points are seconds after the change.
    /// A series not listed here keeps its incident-time values (the fix did nothing to it).
    pub after_remediation: Vec<MetricSeries>,
    /// Only for scoring. Never handed to a source or an analyst.
    pub truth: Option<Truth>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Truth {
    pub root_cause_service: String,
    #[serde(default)]
    pub fault: String,
    /// The dataset's family of the fault when `fault` is a specific injection (PetShop's
    /// `errors`, `delay`): what the fault type is scored against.
    #[serde(default)]
    pub fault_class: Option<String>,
}

impl Truth {
    /// The label the fault type is scored against: `fault_class`, else `fault`.
    pub fn fault_label(&self) -> Option<&str> {
        self.fault_class
            .as_deref()
            .or(Some(self.fault.as_str()))
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid JSON: {detail}")]
    Json { path: String, detail: String },
    #[error("scenario {path}: {detail}")]
    Invalid { path: String, detail: String },
}

// Raw shapes: permissive on read (unknown fields ignored), then validated.
#[derive(Deserialize)]
struct RawScenario<'a> {
    format: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    alert: Option<Value>,
    #[serde(default)]
    topology: Vec<ServiceEdge>,
    #[serde(default)]
    metrics: Vec<RawSeries>,
    #[serde(default, borrow)]
    logs: Vec<RawLog<'a>>,
    #[serde(default)]
    deployments: Vec<RawDeployment>,
    #[serde(default)]
    truth: Option<Truth>,
    #[serde(default)]
    after_remediation: Option<RawAfter>,
}

#[derive(Deserialize)]
struct RawAfter {
    #[serde(default)]
    metrics: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    service: String,
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    points: Vec<(f64, Option<f64>)>,
    #[serde(default)]
    baseline: Vec<(f64, Option<f64>)>,
}

/// Timestamp and level are only read, so they borrow from the text when they can (no escape
/// in them): two allocations less per line, and TrainTicket incidents carry thousands.
#[derive(Deserialize)]
struct RawLog<'a> {
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    service: String,
    #[serde(borrow)]
    level: Cow<'a, str>,
    message: String,
}

#[derive(Deserialize)]
struct RawDeployment {
    service: String,
    #[serde(default)]
    version: Value,
    timestamp: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    author: String,
}

fn parse_time(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = read_scenario_text(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Scenario::parse(&text, &shown)
    }

    /// `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |detail: String| ScenarioError::Invalid {
            path: origin.to_string(),
            detail,
        };
        let raw: RawScenario = serde_json::from_str(text).map_err(|e| ScenarioError::Json {
            path: origin.to_string(),
            detail: e.to_string(),
        })?;
        match raw.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => return Err(invalid(format!("format `{other}` is not `{FORMAT}`"))),
            None => return Err(invalid(format!("missing `format` (expected `{FORMAT}`)"))),
        }
        let alert = raw
            .alert
            .ok_or_else(|| invalid("missing `alert`".into()))
            .and_then(|a| Alert::from_json(a).map_err(|e| invalid(e.to_string())))?;
        let series = |m: RawSeries| MetricSeries {
            service: m.service,
            name: m.name,
            unit: m.unit,
            points: m.points.into_iter().map(|(t, v)| (t as i64, v)).collect(),
            baseline: m.baseline.into_iter().map(|(t, v)| (t as i64, v)).collect(),
        };
        let metrics = raw.metrics.into_iter().map(series).collect();
        let after_remediation = raw
            .after_remediation
            .map(|a| a.metrics.into_iter().map(series).collect())
            .unwrap_or_default();
        let mut logs = Vec::with_capacity(raw.logs.len());
        for (i, l) in raw.logs.into_iter().enumerate() {
            let timestamp = parse_time(&l.timestamp)
                .ok_or_else(|| invalid(format!("logs[{i}].timestamp is not RFC 3339")))?;
            let level = LogLevel::parse(&l.level)
                .ok_or_else(|| invalid(format!("logs[{i}].level `{}` is unknown", l.level)))?;
            logs.push(LogLine {
                timestamp,
                service: l.service,
                level,
                message: l.message,
            });
        }
        let mut deployments = Vec::with_capacity(raw.deployments.len());
        for (i, d) in raw.deployments.into_iter().enumerate() {
            let timestamp = parse_time(&d.timestamp)
                .ok_or_else(|| invalid(format!("deployments[{i}].timestamp is not RFC 3339")))?;
            let version = match d.version {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            deployments.push(Deployment {
                service: d.service,
                version,
                timestamp,
                description: d.description,
                author: d.author,
            });
        }
        Ok(Scenario {
            id: raw.id.unwrap_or_else(|| origin.to_string()),
            description: raw.description.unwrap_or_default(),
            alert,
            topology: raw.topology,
            metrics,
            logs,
            deployments,
            after_remediation,
            truth: raw.truth,
        })
    }

    /// The same incident replayed as if its alert fired at `alert_at`: every timestamp moves
    /// by the same amount, so the evidence keeps its shape relative to the alert.
    pub fn rebased(&self, alert_at: Timestamp) -> Scenario {
        let delta = alert_at - self.alert.timestamp;
        let secs = delta.num_seconds();
        let shift = |pts: &[(i64, Option<f64>)]| pts.iter().map(|(t, v)| (t + secs, *v)).collect();
        let mut s = self.clone();
        s.alert.timestamp = alert_at;
        for m in s.metrics.iter_mut() {
            m.points = shift(&m.points);
            m.baseline = shift(&m.baseline);
        }
        for l in s.logs.iter_mut() {
            l.timestamp += delta;
        }
        for d in s.deployments.iter_mut() {
            d.timestamp += delta;
        }
        // Recovery points are relative to the change, not to the alert: nothing to move.
        s
    }

    /// The scenario as evidence sources: logs, metrics, deployments and topology.
    pub fn sources(self: &Arc<Self>) -> ScenarioSources {
        ScenarioSources(self.clone())
    }

    pub fn services(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .topology
            .iter()
            .flat_map(|e| [e.from.clone(), e.to.clone()])
            .chain(self.metrics.iter().map(|m| m.service.clone()))
            .chain(self.logs.iter().map(|l| l.service.clone()))
            .chain(self.deployments.iter().map(|d| d.service.clone()))
            .chain(self.alert.service.clone())
            .collect();
        s.sort();
        s.dedup();
        s
    }
}

/// Serves one scenario through every evidence port, filtered by the query's window and
/// services just as a real backend would be.
#[derive(Clone)]
pub struct ScenarioSources(pub Arc<Scenario>);

fn wanted(services: &[String], service: &str) -> bool {
    services.is_empty() || services.iter().any(|s| s == service)
}

#[async_trait]
impl LogSource for ScenarioSources {
    fn name(&self) -> String {
        "scenario:logs".into()
    }
    async fn logs(&self, q: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        Ok(self
            .0
            .logs
            .iter()
            .filter(|l| l.timestamp >= q.window.start && l.timestamp <= q.window.end)
            .filter(|l| wanted(&q.services, &l.service))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl MetricSource for ScenarioSources {
    fn name(&self) -> String {
        "scenario:metrics".into()
    }
    async fn metrics(&self, q: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError> {
        let (start, end) = (q.window.start.timestamp(), q.window.end.timestamp());
        let change = q.since_change.map(|t| t.timestamp());
        Ok(self
            .0
            .metrics
            .iter()
            .filter(|m| wanted(&q.services, &m.service))
            .map(|m| {
                let after = change.and_then(|c| {
                    self.0
                        .after_remediation
                        .iter()
                        .find(|a| a.service == m.service && a.name == m.name)
                        .map(|a| (c, a))
                });
                let points = match after {
                    // Before the change the incident as recorded; after it, the recovery
                    // series replayed from the moment of the change.
                    Some((c, a)) => m
                        .points
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t < c)
                        .chain(a.points.iter().map(|(dt, v)| (c + dt, *v)))
                        .filter(|(t, _)| *t >= start && *t <= end)
                        .collect(),
                    None => m
                        .points
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t >= start && *t <= end)
                        .collect(),
                };
                MetricSeries {
                    points,
                    ..m.clone()
                }
            })
            .filter(|m| !m.points.is_empty())
            .collect())
    }
}

#[async_trait]
impl DeploymentSource for ScenarioSources {
    fn name(&self) -> String {
        "scenario:deployments".into()
    }
    async fn deployments(&self, q: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        Ok(self
            .0
            .deployments
            .iter()
            .filter(|d| d.timestamp >= q.window.deployments_since && d.timestamp <= q.window.end)
            .filter(|d| wanted(&q.services, &d.service))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl TopologySource for ScenarioSources {
    fn name(&self) -> String {
        "scenario:topology".into()
    }
    async fn topology(&self, _alert: &Alert) -> Result<Vec<ServiceEdge>, SourceError> {
        Ok(self.0.topology.clone())
    }
}

/// Many scenarios standing in for real backends (`iras serve` without Prometheus, Loki, ...):
/// each query is answered from the scenario whose alert matches the incident's alert, replayed
/// at that alert's time. An alert that matches none gets no evidence, honestly.
#[derive(Clone, Default)]
pub struct ScenarioLibrary {
    scenarios: Vec<Arc<Scenario>>,
}

fn words(s: &str) -> std::collections::BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(|w| w.to_lowercase())
        .collect()
}

impl ScenarioLibrary {
    pub fn new(scenarios: Vec<Scenario>) -> Self {
        ScenarioLibrary {
            scenarios: scenarios.into_iter().map(Arc::new).collect(),
        }
    }

    /// Every `*.json` and `*.json.gz` under `dir`, recursively. A file that is not a valid scenario is an error
    /// naming it: a library that silently dropped files would answer with the wrong evidence.
    pub fn load_dir(dir: &Path) -> Result<Self, ScenarioError> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| ScenarioError::Read {
                path: d.display().to_string(),
                source,
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_scenario_file(&p) {
                    files.push(p);
                }
            }
        }
        files.sort();
        let scenarios = files
            .iter()
            .map(|f| Scenario::load(f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScenarioLibrary::new(scenarios))
    }

    pub fn len(&self) -> usize {
        self.scenarios.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scenarios.is_empty()
    }

    /// The scenario for this alert, replayed at the alert's time.
    pub fn matching(&self, alert: &Alert) -> Option<Scenario> {
        let fingerprint = alert.fingerprint();
        let title = words(&alert.title);
        let score = |s: &Scenario| {
            if s.alert.fingerprint() == fingerprint {
                return 10.0;
            }
            let theirs = words(&s.alert.title);
            let overlap = title.intersection(&theirs).count() as f64;
            let union = title.union(&theirs).count().max(1) as f64;
            let same_service = alert.service.is_some() && alert.service == s.alert.service;
            overlap / union + if same_service { 1.0 } else { 0.0 }
        };
        self.scenarios
            .iter()
            .map(|s| (score(s), s))
            .filter(|(sc, _)| *sc >= 0.6)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, s)| s.rebased(alert.timestamp))
    }

    fn sources_for(&self, alert: &Alert) -> Option<ScenarioSources> {
        self.matching(alert).map(|s| ScenarioSources(Arc::new(s)))
    }
}

#[async_trait]
impl LogSource for ScenarioLibrary {
    fn name(&self) -> String {
        "scenario:logs".into()
    }
    async fn logs(&self, q: &EvidenceQuery) -> Result<Vec<LogLine>, SourceError> {
        match self.sources_for(&q.alert) {
            Some(s) => s.logs(q).await,
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl MetricSource for ScenarioLibrary {
    fn name(&self) -> String {
        "scenario:metrics".into()
    }
    async fn metrics(&self, q: &EvidenceQuery) -> Result<Vec<MetricSeries>, SourceError> {
        match self.sources_for(&q.alert) {
            Some(s) => s.metrics(q).await,
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl DeploymentSource for ScenarioLibrary {
    fn name(&self) -> String {
        "scenario:deployments".into()
    }
    async fn deployments(&self, q: &EvidenceQuery) -> Result<Vec<Deployment>, SourceError> {
        match self.sources_for(&q.alert) {
            Some(s) => s.deployments(q).await,
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl TopologySource for ScenarioLibrary {
    fn name(&self) -> String {
        "scenario:topology".into()
    }
    async fn topology(&self, alert: &Alert) -> Result<Vec<ServiceEdge>, SourceError> {
        Ok(self.matching(alert).map(|s| s.topology).unwrap_or_default())
    }
}

/// The default demo incident, shipped in the binary so `iras demo` needs no files.
pub const DEMO_SCENARIO: &str =
    include_str!("../../../scenarios/synthetic/bad-deploy-payment-npe.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_scenario_parses_with_its_evidence() {
        let s = Scenario::parse(DEMO_SCENARIO, "demo").unwrap();
        assert_eq!(s.alert.service.as_deref(), Some("payment-service"));
        assert!(s.metrics.iter().any(|m| m.name == "error_rate"));
        assert!(s.logs.iter().any(|l| l.level == LogLevel::Error));
        assert!(s.deployments.iter().any(|d| d.version == "v2.3.1"));
    }

    #[test]
    fn a_gzipped_scenario_reads_as_its_json_and_a_corrupt_one_is_a_clear_error() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("demo.json.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(DEMO_SCENARIO.as_bytes()).unwrap();
        enc.finish().unwrap();
        assert!(is_scenario_file(&gz) && is_scenario_file(Path::new("a/B.JSON")));
        assert!(!is_scenario_file(Path::new("notes.gz")));
        let s = Scenario::load(&gz).unwrap();
        assert_eq!(s.alert.service.as_deref(), Some("payment-service"));
        assert_eq!(
            s.metrics.len(),
            Scenario::parse(DEMO_SCENARIO, "d").unwrap().metrics.len()
        );
        let lib = ScenarioLibrary::load_dir(dir.path()).unwrap();
        assert_eq!(lib.len(), 1, "the library finds .json.gz files too");
        let bad = dir.path().join("bad.json.gz");
        std::fs::write(&bad, b"not gzip at all").unwrap();
        let e = Scenario::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json.gz"), "{e}");
    }

    #[test]
    fn a_scenario_without_alert_title_is_refused_with_the_field() {
        let e = Scenario::parse(
            r#"{"format":"iras-scenario/1","alert":{"timestamp":"2024-01-01T00:00:00Z"}}"#,
            "x.json",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("x.json") && msg.contains("title"), "{msg}");
    }

    #[test]
    fn unknown_fields_are_ignored_and_evidence_is_optional() {
        let s = Scenario::parse(
            r#"{"format":"iras-scenario/1","future":1,"alert":{"title":"t","timestamp":"2024-01-01T00:00:00Z"}}"#,
            "x",
        )
        .unwrap();
        assert!(s.logs.is_empty() && s.metrics.is_empty());
    }

    #[test]
    fn wrong_format_and_bad_json_are_clear_errors() {
        let e = Scenario::parse(r#"{"format":"other/2"}"#, "f").unwrap_err();
        assert!(e.to_string().contains("other/2"));
        let e = Scenario::parse("{not json", "f").unwrap_err();
        assert!(matches!(e, ScenarioError::Json { .. }));
    }

    #[test]
    fn rebasing_keeps_evidence_relative_to_the_alert() {
        let s = Scenario::parse(DEMO_SCENARIO, "demo").unwrap();
        let now = chrono::Utc::now();
        let r = s.rebased(now);
        assert_eq!(r.alert.timestamp, now);
        let before = s.alert.timestamp - s.deployments[3].timestamp;
        assert_eq!(r.alert.timestamp - r.deployments[3].timestamp, before);
        let gap = s.alert.timestamp.timestamp() - s.metrics[0].points[0].0;
        assert_eq!(now.timestamp() - r.metrics[0].points[0].0, gap);
    }

    #[test]
    fn the_library_answers_an_alert_from_its_matching_scenario_at_the_alerts_time() {
        let demo = Scenario::parse(DEMO_SCENARIO, "demo").unwrap();
        let lib = ScenarioLibrary::new(vec![demo.clone()]);
        let alert = Alert::from_json(serde_json::json!({
            "title": "High error rate on payment-service",
            "service": "payment-service",
            "timestamp": "2026-01-01T03:00:00Z",
        }))
        .unwrap();
        let m = lib.matching(&alert).expect("matches by service and title");
        assert_eq!(m.alert.timestamp, alert.timestamp);
        let other = Alert::from_json(serde_json::json!({
            "title": "Disk almost full on build-agent-7", "timestamp": "2026-01-01T03:00:00Z"
        }))
        .unwrap();
        assert!(
            lib.matching(&other).is_none(),
            "no evidence rather than the wrong evidence"
        );
    }

    #[tokio::test]
    async fn sources_filter_by_window_and_service() {
        let s = Arc::new(Scenario::parse(DEMO_SCENARIO, "demo").unwrap());
        let src = s.sources();
        let at = s.alert.timestamp;
        let q = EvidenceQuery {
            services: vec!["payment-service".into()],
            window: EvidenceWindow {
                start: at - chrono::Duration::minutes(5),
                end: at,
                deployments_since: at - chrono::Duration::hours(1),
            },
            alert: s.alert.clone(),
            since_change: None,
        };
        let logs = src.logs(&q).await.unwrap();
        assert!(!logs.is_empty());
        assert!(logs
            .iter()
            .all(|l| l.service == "payment-service" && l.timestamp <= at));
        let deps = src.deployments(&q).await.unwrap();
        assert_eq!(deps.len(), 1, "only v2.3.1 is within the hour: {deps:?}");
        let metrics = src.metrics(&q).await.unwrap();
        assert!(metrics
            .iter()
            .all(|m| m.points.iter().all(|(t, _)| *t <= at.timestamp())));
    }

    #[tokio::test]
    async fn after_a_change_a_scenario_replays_its_recovery_series_from_the_change() {
        let mut s = Scenario::parse(DEMO_SCENARIO, "demo").unwrap();
        let at = s.alert.timestamp;
        let alert = s.alert.clone();
        let q = |since: Option<Timestamp>| EvidenceQuery {
            services: vec!["payment-service".into()],
            window: EvidenceWindow {
                start: at,
                end: at + chrono::Duration::minutes(5),
                deployments_since: at,
            },
            alert: alert.clone(),
            since_change: since,
        };
        let error_rate = |m: Vec<MetricSeries>| -> Vec<f64> {
            m.into_iter()
                .find(|m| m.name == "error_rate")
                .map(|m| m.points.iter().filter_map(|p| p.1).collect())
                .unwrap_or_default()
        };
        // Without recovery data the fix did nothing: the incident's values go on.
        let src = Arc::new(s.clone()).sources();
        let still = error_rate(src.metrics(&q(Some(at))).await.unwrap());
        assert!(
            !still.is_empty() && still.iter().all(|v| *v > 0.3),
            "{still:?}"
        );
        s.after_remediation = vec![MetricSeries {
            service: "payment-service".into(),
            name: "error_rate".into(),
            unit: "ratio".into(),
            points: vec![(60, Some(0.003)), (120, Some(0.002))],
            baseline: vec![],
        }];
        let src = Arc::new(s).sources();
        let after = error_rate(src.metrics(&q(Some(at))).await.unwrap());
        assert_eq!(after, vec![0.003, 0.002]);
    }
}

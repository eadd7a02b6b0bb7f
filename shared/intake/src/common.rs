//! What every parser needs: reading untrusted JSON by type, times in the formats sources use,
//! and building an [`Alert`] whose stored record always reads back.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use iras_core::{Alert, AlertLink, AlertOrigin, AlertState, Timestamp, ORIGIN_FIELD};
use serde_json::{Map, Value};

use crate::IntakeError;

/// A title is a line, not an essay.
const MAX_TITLE_CHARS: usize = 300;

/// The text at `key` when it is a non-empty string; anything else counts as absent (a
/// number where a name belongs is kept only as raw data).
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The string values of the object at `key` (labels, annotations): others are left out.
pub(crate) fn string_map(v: &Value, key: &str) -> Map<String, Value> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339, or the ISO 8601 variants sources actually send (`+0000` without the colon, as
/// CloudWatch and PagerDuty examples do).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

/// Epoch milliseconds, as a number or a string of digits.
pub(crate) fn epoch_millis(v: Option<&Value>) -> Option<Timestamp> {
    let ms = match v? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Utc.timestamp_millis_opt(ms).single()
}

/// A time the source sends as a string, checked: present but unreadable is an error naming it.
pub(crate) fn time_at(v: &Value, key: &str, path: &str) -> Result<Option<Timestamp>, IntakeError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| IntakeError::new(path, "an ISO 8601 date-time")),
        Some(_) => Err(IntakeError::new(path, "an ISO 8601 date-time string")),
    }
}

/// Builds one alert; [`Draft::finish`] makes sure its record reads back.
pub(crate) struct Draft {
    pub title: Option<String>,
    pub timestamp: Timestamp,
    pub service: Option<String>,
    pub origin: AlertOrigin,
    pub fields: Map<String, Value>,
}

impl Draft {
    pub fn new(source: &str, state: AlertState, timestamp: Timestamp) -> Draft {
        Draft {
            title: None,
            timestamp,
            service: None,
            origin: AlertOrigin {
                source: source.to_string(),
                state,
                ..AlertOrigin::default()
            },
            fields: Map::new(),
        }
    }

    pub fn key(&mut self, key: Option<String>) -> &mut Self {
        self.origin.key = key.filter(|k| !k.is_empty());
        self
    }

    /// The source's severity word or priority, and what the documented table makes of it.
    pub fn severity(&mut self, word: Option<String>) -> &mut Self {
        if let Some(w) = word {
            self.origin.severity = iras_core::severity_table::from_source(&w);
            self.origin.source_severity = Some(w);
        }
        self
    }

    pub fn link(&mut self, kind: &str, href: Option<String>) -> &mut Self {
        if let Some(h) = href.filter(|h| h.starts_with("http://") || h.starts_with("https://")) {
            if !self.origin.links.iter().any(|l| l.href == h) {
                self.origin.links.push(AlertLink {
                    kind: kind.into(),
                    href: h,
                });
            }
        }
        self
    }

    pub fn field(&mut self, key: &str, value: Value) -> &mut Self {
        if !value.is_null() {
            self.fields.insert(key.into(), value);
        }
        self
    }

    pub fn finish(self, title_field: &str) -> Result<Alert, IntakeError> {
        let title: String = self
            .title
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| IntakeError::new(title_field, "a non-empty string (the alert's title)"))?
            .trim()
            .chars()
            .take(MAX_TITLE_CHARS)
            .collect();
        let mut fields = self.fields;
        // Named fields of `Alert`: the same key in `fields` would make the record unreadable.
        for reserved in ["title", "timestamp", "service", ORIGIN_FIELD] {
            fields.remove(reserved);
        }
        Ok(Alert {
            title,
            timestamp: self.timestamp,
            service: self.service.filter(|s| !s.trim().is_empty()),
            origin: Some(self.origin),
            fields,
        })
    }
}

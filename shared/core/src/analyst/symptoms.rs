//! The words an alert uses for what is wrong: one list, read by triage (how severe) and by root-
//! cause analysis (which family of symptom the alert is about).

/// Slow responses.
pub const SLOWNESS_WORDS: &[&str] = &[
    "latency", "slow", "slowness", "p99", "p95", "p90", "duration", "timing", "timeout", "timeouts",
];
/// Failed requests.
pub const ERROR_WORDS: &[&str] = &[
    "error",
    "errors",
    "5xx",
    "500",
    "503",
    "failure",
    "failures",
    "failing",
    "exception",
    "exceptions",
];
/// Requests failing outright: the service is down or unreachable.
pub const OUTAGE_WORDS: &[&str] = &[
    "down",
    "outage",
    "unavailable",
    "unreachable",
    "unhealthy",
    "availability",
    "crashloop",
    "crashloopbackoff",
];
/// Something running out of validity (certificates, tokens).
pub const EXPIRY_WORDS: &[&str] = &[
    "expired",
    "expiry",
    "expires",
    "expiring",
    "certificate",
    "cert",
];

/// What an alert's text (lowercased) says is wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertSymptoms {
    pub errors: bool,
    pub slowness: bool,
    pub outage: bool,
    pub expiry: bool,
}

impl AlertSymptoms {
    /// Reads lowercased alert text word by word (`5XXError` alarm names as a phrase).
    pub fn read(text: &str) -> AlertSymptoms {
        let words: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
        AlertSymptoms {
            errors: has(ERROR_WORDS) || text.contains("error rate") || text.contains("5xxerror"),
            slowness: has(SLOWNESS_WORDS),
            outage: has(OUTAGE_WORDS) || text.contains("no healthy"),
            expiry: has(EXPIRY_WORDS),
        }
    }

    /// Failures of any kind: errors or an outage.
    pub fn failing(&self) -> bool {
        self.errors || self.outage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_words_say_slow_failing_or_both() {
        let s = AlertSymptoms::read("[firing:1] mobilebff order latency p99 > 5s");
        assert!(s.slowness && !s.failing());
        let s = AlertSymptoms::read("high 5xxerror rate on api gateway");
        assert!(s.errors && !s.slowness);
        let s = AlertSymptoms::read("availability drop on petsite");
        assert!(s.outage && s.failing());
        assert_eq!(
            AlertSymptoms::read("slo alert on frontend"),
            AlertSymptoms::default()
        );
    }
}

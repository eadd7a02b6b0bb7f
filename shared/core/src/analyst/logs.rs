//! Log evidence: bursts of problem lines per service compared with the service's own earlier
//! lines, message templates that are new near the onset, and which services callers name in
//! their errors (a caller's "payment authorization failed" is evidence against the callee).
//!
//! One pass over the lines; per line the work is bounded by the number of known services.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Duration;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

use super::graph::Graph;
use crate::domain::{LogLevel, LogLine, Timestamp};

/// Lines before `onset - ONSET_MARGIN` are "before"; the margin absorbs clock skew and the
/// first errors that precede a metric's first bad sample.
const ONSET_MARGIN_SECONDS: i64 = 120;
/// Only the start of a message is read: enough for templates and names, bounded cost.
const MAX_SCAN_CHARS: usize = 600;
const TEMPLATE_TOKENS: usize = 12;

/// Normalises a message to its template: first line only, every token holding a digit (ids,
/// counts, timestamps, hex, IPs) becomes `<*>`, and long messages keep their first tokens.
pub fn template(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let mut out = Vec::new();
    for tok in first.split_whitespace().take(TEMPLATE_TOKENS) {
        if tok.chars().any(|c| c.is_ascii_digit()) {
            if out.last() != Some(&"<*>") {
                out.push("<*>");
            }
        } else {
            out.push(tok);
        }
    }
    let t = out.join(" ");
    if t.chars().count() > 160 {
        t.chars().take(160).collect()
    } else {
        t
    }
}

fn level_weight(level: LogLevel) -> f64 {
    match level {
        LogLevel::Fatal => 2.0,
        LogLevel::Error => 1.0,
        LogLevel::Warn => 0.5,
        _ => 0.0,
    }
}

/// What one service's own logs say.
#[derive(Debug, Clone, Default)]
pub struct ServiceLogs {
    pub problems_before: usize,
    pub problems_after: usize,
    pub errors_after: usize,
    pub fatal_after: usize,
    pub warn_after: usize,
    /// Problem lines after the onset whose template never appeared earlier in the window.
    pub new_template_lines: usize,
    /// The most frequent new template and how often it appeared.
    pub top_new_template: Option<(String, usize)>,
    /// First problem line after the onset with a new template that names no other service.
    pub first_new_at: Option<Timestamp>,
    /// Weighted excess of problem lines over the service's own earlier rate, counting lines
    /// that name a callee at 30% (they describe someone else's failure).
    pub own_excess: f64,
    /// Share of this service's problem lines after the onset that name another service.
    pub blaming_share: f64,
    /// Lowercased new templates (bounded), for guessing the fault kind.
    pub new_templates: Vec<String>,
}

impl ServiceLogs {
    /// 0..1: how strongly the service's own lines point at itself.
    pub fn strength(&self) -> f64 {
        if self.own_excess <= 0.0 {
            return 0.0;
        }
        let novelty = if self.problems_after == 0 {
            0.0
        } else {
            self.new_template_lines as f64 / self.problems_after as f64
        };
        (1.0 - (-self.own_excess / 8.0).exp()) * (0.5 + 0.5 * novelty)
    }
}

/// Lines of other services that name a service.
#[derive(Debug, Clone, Default)]
pub struct Blame {
    pub weight: f64,
    pub lines: usize,
    /// Speaker -> lines.
    pub by: BTreeMap<String, usize>,
    /// A few templates of the lines naming it, for the fault guess.
    pub templates: Vec<String>,
    /// When a caller first complained about it: often more precise than 1-minute metrics.
    pub first_at: Option<Timestamp>,
}

impl Blame {
    pub fn strength(&self) -> f64 {
        1.0 - (-self.weight / 6.0).exp()
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogFindings {
    pub services: HashMap<String, ServiceLogs>,
    pub blame: HashMap<String, Blame>,
    pub total_lines: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// A speaker's alias tokens with the service each names, and the matcher over those tokens.
type SpeakerAliases = (Vec<(String, String)>, Words);

/// Finds which of a set of lowercase words occur in a text as whole words (no letter or
/// digit right before or after), case-insensitively, in one pass over the text whatever the
/// number of words: every line is read against every service name, and TrainTicket has 46.
struct Words {
    automaton: Option<AhoCorasick>,
    count: usize,
}

impl Words {
    fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Words {
        let words: Vec<&str> = words.into_iter().collect();
        let automaton = (!words.is_empty() && words.iter().all(|w| !w.is_empty()))
            .then(|| {
                // An NFA: built fresh per analysis, for lines of a few hundred bytes, a DFA's
                // build costs more than its faster scan saves.
                AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .ascii_case_insensitive(true)
                    .build(&words)
                    .ok()
            })
            .flatten();
        Words {
            automaton,
            count: words.len(),
        }
    }

    /// For each word, whether `hay` holds it as a whole word.
    fn found(&self, hay: &str) -> Vec<bool> {
        let mut found = vec![false; self.count];
        let Some(ac) = &self.automaton else {
            return found;
        };
        let h = hay.as_bytes();
        // Overlapping: `pay` inside `payment` must not hide a later whole-word `pay`.
        for m in ac.find_overlapping_iter(hay) {
            let before_ok = m.start() == 0 || !is_word_byte(h[m.start() - 1]);
            let after_ok = m.end() >= h.len() || !is_word_byte(h[m.end()]);
            if before_ok && after_ok {
                found[m.pattern().as_usize()] = true;
            }
        }
        found
    }
}

fn name_tokens(name: &str) -> Vec<String> {
    name.to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| t.len() >= 4 && !matches!(*t, "service" | "server" | "prod" | "main"))
        .map(str::to_string)
        .collect()
}

/// For each speaker, the short names by which it may refer to the services it calls directly:
/// name tokens that single one callee out (`payment` for `payment-service`, `shipengine` for
/// `shipengine-api`). Tokens close to the speaker's own name are left out: `orders` in
/// order-service's own package names says nothing about `orders-db`.
fn aliases(graph: &Graph, speaker: &str) -> Vec<(String, String)> {
    let own: Vec<String> = name_tokens(speaker);
    let related = |t: &str| {
        own.iter()
            .any(|o| o.starts_with(t) || t.starts_with(o.as_str()))
    };
    let mut token_owner: HashMap<String, Vec<&String>> = HashMap::new();
    for c in graph.callees(speaker) {
        for t in name_tokens(c) {
            token_owner.entry(t).or_default().push(c);
        }
    }
    let mut out = Vec::new();
    for (tok, owners) in token_owner {
        if owners.len() == 1 && !related(&tok) {
            out.push((tok, owners[0].clone()));
        }
    }
    out.sort();
    out
}

/// Reads the window's lines once. `onset` splits "before" from "after"; `services` are the
/// names a line may mention in full.
pub fn analyse(
    logs: &[LogLine],
    onset: Timestamp,
    window: (Timestamp, Timestamp),
    services: &[String],
    graph: &Graph,
) -> LogFindings {
    let split = onset - Duration::seconds(ONSET_MARGIN_SECONDS);
    let (start, end) = window;
    let before_secs = (split - start).num_seconds().max(0) as f64;
    let after_secs = (end - split).num_seconds().max(60) as f64;

    // Templates each service used before the split, at any level.
    let mut seen_before: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut weighted_before: HashMap<&str, f64> = HashMap::new();
    let mut findings = LogFindings {
        total_lines: logs.len(),
        ..Default::default()
    };
    for l in logs.iter().filter(|l| l.timestamp < split) {
        seen_before
            .entry(l.service.as_str())
            .or_default()
            .insert(template(&l.message));
        if l.level.is_problem() {
            *weighted_before.entry(l.service.as_str()).or_default() += level_weight(l.level);
            findings
                .services
                .entry(l.service.clone())
                .or_default()
                .problems_before += 1;
        }
    }

    let lowered: Vec<(String, String)> = services
        .iter()
        .filter(|s| s.len() >= 4)
        .map(|s| (s.to_ascii_lowercase(), s.clone()))
        .collect();
    let full_names = Words::new(lowered.iter().map(|(low, _)| low.as_str()));
    // A speaker's aliases for its neighbours, built once per speaker, not per line.
    let mut alias_cache: HashMap<&str, SpeakerAliases> = HashMap::new();
    let mut new_counts: HashMap<&str, HashMap<String, usize>> = HashMap::new();
    let mut own_weight_after: HashMap<&str, f64> = HashMap::new();
    let mut blaming_lines: HashMap<&str, usize> = HashMap::new();

    for l in logs
        .iter()
        .filter(|l| l.timestamp >= split && l.level.is_problem())
    {
        let speaker = l.service.as_str();
        let w = level_weight(l.level);
        let tpl = template(&l.message);
        let is_new = !seen_before
            .get(speaker)
            .is_some_and(|set| set.contains(&tpl));
        let mut cut = MAX_SCAN_CHARS.min(l.message.len());
        while !l.message.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = &l.message[..cut];

        // Which other services this line names.
        let mut named: Vec<String> = lowered
            .iter()
            .zip(full_names.found(text))
            .filter(|((_, orig), found)| *found && orig != speaker)
            .map(|((_, orig), _)| orig.clone())
            .collect();
        if named.is_empty() {
            let (al, words) = alias_cache.entry(speaker).or_insert_with(|| {
                let al = aliases(graph, speaker);
                let words = Words::new(al.iter().map(|(tok, _)| tok.as_str()));
                (al, words)
            });
            for ((_, owner), found) in al.iter().zip(words.found(text)) {
                if found && !named.contains(owner) {
                    named.push(owner.clone());
                }
            }
        }
        // A name inside a longer named one (`auth` inside `auth-service`) is the same mention.
        named.sort();
        named.dedup();
        if !named.is_empty() {
            *blaming_lines.entry(speaker).or_default() += 1;
            let share = w / named.len() as f64;
            for target in &named {
                let b = findings.blame.entry(target.clone()).or_default();
                b.weight += share;
                b.lines += 1;
                if b.first_at.is_none_or(|t| l.timestamp < t) {
                    b.first_at = Some(l.timestamp);
                }
                *b.by.entry(speaker.to_string()).or_default() += 1;
                if b.templates.len() < 8 {
                    let lt = tpl.to_ascii_lowercase();
                    if !b.templates.contains(&lt) {
                        b.templates.push(lt);
                    }
                }
            }
        }
        *own_weight_after.entry(speaker).or_default() += if named.is_empty() { w } else { 0.3 * w };

        let s = findings.services.entry(l.service.clone()).or_default();
        s.problems_after += 1;
        match l.level {
            LogLevel::Fatal => s.fatal_after += 1,
            LogLevel::Error => s.errors_after += 1,
            _ => s.warn_after += 1,
        }
        if is_new {
            s.new_template_lines += 1;
            if named.is_empty() && s.first_new_at.is_none_or(|t| l.timestamp < t) {
                s.first_new_at = Some(l.timestamp);
            }
            *new_counts
                .entry(speaker)
                .or_default()
                .entry(tpl)
                .or_default() += 1;
        }
    }

    for (svc, s) in findings.services.iter_mut() {
        let before = weighted_before.get(svc.as_str()).copied().unwrap_or(0.0);
        let own_after = own_weight_after.get(svc.as_str()).copied().unwrap_or(0.0);
        // The service's own earlier rate, projected onto the later part of the window. With
        // less than 5 minutes of history there is no rate to compare with.
        let expected = if before_secs >= 300.0 {
            before / before_secs * after_secs
        } else {
            0.0
        };
        s.own_excess = (own_after - expected).max(0.0);
        if s.problems_after > 0 {
            s.blaming_share = blaming_lines.get(svc.as_str()).copied().unwrap_or(0) as f64
                / s.problems_after as f64;
        }
        if let Some(counts) = new_counts.get(svc.as_str()) {
            let mut v: Vec<(&String, &usize)> = counts.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            s.top_new_template = v.first().map(|(t, n)| ((*t).clone(), **n));
            s.new_templates = v
                .iter()
                .take(8)
                .map(|(t, _)| t.to_ascii_lowercase())
                .collect();
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServiceEdge;
    use chrono::DateTime;

    fn line(min: i64, svc: &str, level: LogLevel, msg: &str) -> LogLine {
        LogLine {
            timestamp: DateTime::from_timestamp(1_700_000_000 + min * 60, 0).unwrap(),
            service: svc.into(),
            level,
            message: msg.into(),
        }
    }

    #[test]
    fn templates_hide_ids_and_numbers() {
        assert_eq!(
            template(
                "Charge failed order=ord_1a2b3c amount=812 in 35ms\n  at Foo.bar(Foo.java:12)"
            ),
            "Charge failed <*> in <*>"
        );
        assert_eq!(
            template("Charge failed order=ord_9f8e7d amount=5 in 2ms"),
            "Charge failed <*> in <*>"
        );
        assert_eq!(template("cache hit ratio low"), "cache hit ratio low");
    }

    #[test]
    fn burst_of_new_errors_and_callers_naming_the_callee() {
        let graph = Graph::new(&[ServiceEdge {
            from: "checkout-service".into(),
            to: "payment-service".into(),
        }]);
        let mut logs = vec![line(0, "payment-service", LogLevel::Warn, "pool slow 12ms")];
        for i in 0..20 {
            logs.push(line(
                30 + i % 10,
                "payment-service",
                LogLevel::Error,
                &format!("NullPointerException at tax lookup id={i}"),
            ));
            logs.push(line(
                30 + i % 10,
                "checkout-service",
                LogLevel::Error,
                &format!("payment authorization failed order={i}"),
            ));
        }
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let onset = start + Duration::minutes(30);
        let services = vec![
            "payment-service".to_string(),
            "checkout-service".to_string(),
        ];
        let f = analyse(
            &logs,
            onset,
            (start, start + Duration::minutes(45)),
            &services,
            &graph,
        );
        let p = &f.services["payment-service"];
        assert_eq!(p.problems_after, 20);
        assert_eq!(p.new_template_lines, 20);
        assert!(p.strength() > 0.8, "{p:?}");
        let c = &f.services["checkout-service"];
        assert!(c.blaming_share > 0.99);
        assert!(c.strength() < p.strength());
        let b = &f.blame["payment-service"];
        assert_eq!(b.lines, 20);
        assert!(b.strength() > 0.9);
        assert!(!f.blame.contains_key("checkout-service"));
    }

    #[test]
    fn steady_warnings_are_not_a_burst() {
        let graph = Graph::default();
        let logs: Vec<LogLine> = (0..45)
            .map(|m| line(m, "catalog", LogLevel::Warn, &format!("slow query {m} ms")))
            .collect();
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let f = analyse(
            &logs,
            start + Duration::minutes(30),
            (start, start + Duration::minutes(45)),
            &["catalog".into()],
            &graph,
        );
        assert!(
            f.services["catalog"].strength() < 0.1,
            "{:?}",
            f.services["catalog"]
        );
    }

    #[test]
    fn word_matching_respects_boundaries() {
        let found = |hay: &str, word: &str| Words::new([word]).found(hay)[0];
        assert!(found(
            "post http://pricing-service.market.svc:8080",
            "pricing-service"
        ));
        assert!(found("caller=payment/client.go", "payment"));
        assert!(found("Caller=PAYMENT/client.go", "payment"));
        assert!(!found("payments.stripegateway", "stripe"));
        assert!(found("c.a.payments.stripe.gateway", "stripe"));
        // A word inside a longer one does not hide a later whole-word occurrence.
        assert!(found("payments failed; pay timed out", "pay"));
        let several = Words::new(["auth", "auth-service", "cart"]).found("auth-service: timeout");
        assert_eq!(several, vec![true, true, false]);
        assert!(Words::new([]).found("anything").is_empty());
    }
}

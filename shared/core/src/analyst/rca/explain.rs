//! What the hypothesis says: evidence lines per candidate, the one-sentence cause, the
//! contributing factors and the alternatives.

use chrono::Duration;

use super::features::Features;
use super::Analysis;
use crate::analyst::metrics::fmt_num;
use crate::analyst::text::{clean, is_flag_deployment};

pub(super) fn describe_gap(d: Duration) -> String {
    let m = d.num_minutes();
    if m.abs() < 1 {
        "under a minute".to_string()
    } else if m.abs() < 120 {
        format!("{} min", m.abs())
    } else if m.abs() < 48 * 60 {
        format!("{} h", m.abs() / 60)
    } else {
        format!("{} days", m.abs() / (24 * 60))
    }
}

pub(super) fn evidence_lines(svc: &str, f: &Features, a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    for (_, d) in f.devs.iter().take(3) {
        let m = &d.anomaly;
        let mut line = format!(
            "{} {} vs baseline {} (score {:.0}",
            clean(&m.metric, 60),
            fmt_num(m.current),
            fmt_num(m.baseline),
            m.score
        );
        if m.baseline_estimated {
            line.push_str(", baseline estimated from the window");
        }
        if d.persistence < 0.34 {
            line.push_str(", brief spike");
        }
        if let Some(o) = m.onset {
            line.push_str(&format!(", from {}", o.format("%H:%M")));
        }
        line.push(')');
        out.push(line);
    }
    if let Some(s) = a.findings.services.get(svc) {
        if s.problems_after > 0 && f.logs > 0.05 {
            let mut parts = Vec::new();
            if s.fatal_after > 0 {
                parts.push(format!("{} FATAL", s.fatal_after));
            }
            if s.errors_after > 0 {
                parts.push(format!("{} ERROR", s.errors_after));
            }
            if s.warn_after > 0 {
                parts.push(format!("{} WARN", s.warn_after));
            }
            let mut line = format!(
                "{} lines since the onset ({} before)",
                parts.join(" + "),
                s.problems_before
            );
            if let Some((t, n)) = &s.top_new_template {
                line.push_str(&format!(", new template \"{}\" x{n}", clean(t, 90)));
            }
            out.push(line);
        }
    }
    if let Some(b) = a.findings.blame.get(svc) {
        if f.blamed > 0.05 {
            let by: Vec<String> =
                b.by.iter()
                    .map(|(s, n)| format!("{} ({n})", clean(s, 40)))
                    .collect();
            out.push(format!(
                "named in {} problem lines of {}",
                b.lines,
                by.join(", ")
            ));
        }
    }
    if let Some(note) = &f.contention_note {
        out.push(note.clone());
    }
    if let Some(d) = &f.deployment {
        let gap = a.onset - d.timestamp;
        let what = if is_flag_deployment(d) {
            "config change"
        } else {
            "deployed"
        };
        let when = if gap >= Duration::zero() {
            format!("{} before onset", describe_gap(gap))
        } else {
            format!("{} after onset", describe_gap(gap))
        };
        let desc = if d.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", clean(&d.description, 80))
        };
        out.push(format!("{what} {} {when}{desc}", clean(&d.version, 60)));
    }
    if !f.explains.is_empty() {
        let list: Vec<String> = f.explains.iter().take(4).map(|s| clean(s, 40)).collect();
        out.push(format!("would explain anomalous {}", list.join(", ")));
    }
    if let (Some(by), true) = (&f.explained_by, f.explained >= 0.5) {
        out.push(format!("itself explained by {}", clean(by, 60)));
    }
    if let Some(o) = f.onset {
        out.push(format!("first deviation at {}", o.format("%H:%M:%S")));
    }
    out
}

pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

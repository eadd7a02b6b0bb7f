//! What every log backend has in common (Loki, Elasticsearch, CloudWatch Logs): bounded lines
//! and a level read from the line when the backend has no level field.

use crate::domain::LogLevel;

/// Characters kept of one log line; a stack trace beyond this says nothing new.
pub const MAX_LINE_CHARS: usize = 2_000;

/// Lines matching this (case-insensitive) are the ones worth reading in an incident.
pub const DEFAULT_PROBLEM_PATTERN: &str = "(?i)(warn|error|fatal|exception|panic)";

/// The line cut to [`MAX_LINE_CHARS`], marked when cut.
pub fn cap_line(line: &str) -> String {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.chars().count() <= MAX_LINE_CHARS {
        return line.to_string();
    }
    let mut out: String = line.chars().take(MAX_LINE_CHARS).collect();
    out.push_str(" …[truncated]");
    out
}

/// The level a line declares (`level=error`, `"level":"warn"`, Lambda's `[ERROR]`), else the
/// worst problem word in it, else `Info`.
pub fn level_of_line(line: &str) -> LogLevel {
    let lower = line.to_ascii_lowercase();
    for key in [
        "\"level\":\"",
        "\"level\": \"",
        "level=",
        "\"severity\":\"",
        "severity=",
        "[",
    ] {
        if let Some(at) = lower.find(key) {
            let rest = &line[at + key.len()..];
            let word: String = rest
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if let Some(level) = LogLevel::parse(&word) {
                return level;
            }
        }
    }
    let has = |w: &str| lower.contains(w);
    if has("fatal") || has("panic") || has("critical") {
        LogLevel::Fatal
    } else if has("error") || has("exception") {
        LogLevel::Error
    } else if has("warn") {
        LogLevel::Warn
    } else {
        LogLevel::Info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_the_line() {
        assert_eq!(
            level_of_line("level=warn msg=\"error budget\""),
            LogLevel::Warn
        );
        assert_eq!(
            level_of_line(r#"{"level":"error","msg":"x"}"#),
            LogLevel::Error
        );
        assert_eq!(
            level_of_line("java.lang.NullPointerException"),
            LogLevel::Error
        );
        assert_eq!(level_of_line("PANIC: out of memory"), LogLevel::Fatal);
        assert_eq!(
            level_of_line("[ERROR] 2026-03-02T03:04:40Z 7d1c handler failed"),
            LogLevel::Error
        );
        assert_eq!(level_of_line("all good"), LogLevel::Info);
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let long = "x".repeat(MAX_LINE_CHARS + 10);
        let cut = cap_line(&long);
        assert!(cut.ends_with("…[truncated]"));
        assert_eq!(cap_line("short\n"), "short");
    }
}

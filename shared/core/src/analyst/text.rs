//! Helpers for untrusted text: evidence strings shown to people, names put in commands.

use crate::domain::Deployment;

/// Printable, single-line, bounded: evidence and log text come from untrusted sources.
pub fn clean(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Text for a terminal: line breaks kept for layout, every other control character (ESC of an
/// ANSI sequence, CR that rewrites a line, BEL, backspace) shown as its escape instead of being
/// obeyed, so an alert's title cannot recolour, hide or forge console output.
pub fn terminal_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A name may go into a command only if it is made of `[A-Za-z0-9._:-]` (and does not start
/// with `-`, which a CLI would read as an option).
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// A feature-flag or configuration change rather than a code deployment.
pub fn is_flag_deployment(d: &Deployment) -> bool {
    let v = d.version.to_ascii_lowercase();
    let desc = d.description.to_ascii_lowercase();
    v.starts_with("flag:")
        || v.starts_with("config:")
        || desc.contains("launchdarkly")
        || desc.contains("feature flag")
        || desc.contains("flag rollout")
        || (desc.contains("rollout") && desc.contains('%') && desc.contains("flag"))
}

/// The flag key a flag change names: `flag:pricing.dynamic-discounts-v2@v37` ->
/// `pricing.dynamic-discounts-v2`.
pub fn flag_key(d: &Deployment) -> Option<String> {
    let v = d.version.trim();
    let rest = v
        .strip_prefix("flag:")
        .or_else(|| v.strip_prefix("config:"))?;
    let key = rest.split('@').next().unwrap_or("").trim();
    safe_name(key).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_shell_or_spaces_are_not_safe() {
        assert!(safe_name("payment-service"));
        assert!(safe_name("PetSearch_AWS::ECS::Fargate"));
        for bad in ["", "a b", "x;rm", "$(id)", "-n", "a/b", "ns\n"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn flag_changes_are_recognised() {
        let d = Deployment {
            service: "pricing-service".into(),
            version: "flag:pricing.dynamic-discounts-v2@v37".into(),
            timestamp: chrono::Utc::now(),
            description: "LaunchDarkly (production): rollout 5% -> 100%".into(),
            author: String::new(),
        };
        assert!(is_flag_deployment(&d));
        assert_eq!(
            flag_key(&d).as_deref(),
            Some("pricing.dynamic-discounts-v2")
        );
        assert_eq!(clean("a\nb", 10), "a b");
        assert_eq!(clean("abcdef", 3), "abc…");
    }
}

#[cfg(test)]
mod terminal_tests {
    use super::terminal_safe;

    #[test]
    fn escapes_and_carriage_returns_are_shown_not_obeyed() {
        let title = "disk full\x1b[2J\x1b[31mALL CLEAR\r\u{7}ok\nnext line";
        let shown = terminal_safe(title);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert_eq!(
            shown,
            "disk full\\u{1b}[2J\\u{1b}[31mALL CLEAR\\r\\u{7}ok\nnext line"
        );
    }
}

//! Service names come from alerts and models: untrusted text. Wherever one enters a query
//! language or a chat message it goes through here, never spliced in raw.

use std::fmt::Write;

/// The inside of a double-quoted PromQL or LogQL string. Both languages read Go's escapes, so
/// `\` and `"` are escaped and control characters (newlines included) become escapes too:
/// nothing in the value can close the string and add a matcher, an operator or a comment.
pub fn quoted_string_body(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Slack's mrkdwn gives `&`, `<` and `>` meaning (links, mentions such as `<!channel>`); its
/// documentation asks for exactly these three to be escaped in text we did not write.
pub fn slack_mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut. Cut before escaping, so an entity
/// such as `&amp;` is never split.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A label name for PromQL/LogQL matchers: `[a-zA-Z_][a-zA-Z0-9_]*`, as both languages define.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a Go-style double-quoted string from the start of `s` the way a PromQL lexer
    /// does: returns its value and what follows the closing quote.
    fn lex(s: &str) -> (String, &str) {
        assert!(s.starts_with('"'));
        let mut value = String::new();
        let mut chars = s[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (value, &s[i + 2..]),
                '\\' => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'u' => {
                        let hex: String = (0..4).map(|_| chars.next().unwrap().1).collect();
                        value.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    other => value.push(other),
                },
                '\n' => panic!("raw newline inside a string literal"),
                c => value.push(c),
            }
        }
        panic!("unterminated string: {s}")
    }

    #[test]
    fn a_hostile_service_name_stays_one_label_value() {
        for name in [
            r#"pay"} or vector(1) #"#,
            "pay\\\"} or vector(1)",
            "pay\n} or vector(1)",
            "a\u{7}b\u{0}",
            "payment-service",
        ] {
            let quoted = format!("\"{}\"}}", quoted_string_body(name));
            let (value, rest) = lex(&quoted);
            assert_eq!(value, name);
            assert_eq!(rest, "}", "nothing escapes the string for {name:?}");
        }
    }

    #[test]
    fn slack_control_characters_are_escaped() {
        assert_eq!(
            slack_mrkdwn("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }

    #[test]
    fn label_names_follow_the_grammar() {
        assert!(is_label_name("service"));
        assert!(is_label_name("_app_1"));
        assert!(!is_label_name("1app"));
        assert!(!is_label_name("app-name"));
        assert!(!is_label_name(""));
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 3), "hé…");
    }
}

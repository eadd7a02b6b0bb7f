//! What Loki and Elasticsearch share with every log backend lives in core.

pub use iras_core::loglines::{cap_line, level_of_line, DEFAULT_PROBLEM_PATTERN, MAX_LINE_CHARS};

//! Reading the integrations' variables: blank counts as unset, a badly formed value is an
//! error naming the variable.

use std::collections::HashMap;
use std::time::Duration;

use iras_core::config::{ConfigError, EnvVars};
use reqwest::Url;

/// Request timeout of every integration unless `INTEGRATION_TIMEOUT_SECONDS` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = iras_core::config::DEFAULT_INTEGRATION_TIMEOUT;

pub(crate) struct Vars<'a>(pub &'a HashMap<String, String>);

pub(crate) fn error(name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        problem: problem.into(),
    }
}

impl Vars<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        EnvVars(self.0).get(name)
    }

    pub fn is_set(&self, name: &str) -> bool {
        EnvVars(self.0).is_set(name)
    }

    /// An http(s) base URL without query or fragment; a trailing slash is dropped.
    pub fn url(&self, name: &str) -> Result<Option<Url>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse_base_url(v).map(Some).map_err(|p| error(name, p)),
        }
    }

    pub fn url_or(&self, name: &str, default: &str) -> Result<Url, ConfigError> {
        Ok(match self.url(name)? {
            Some(u) => u,
            None => parse_base_url(default).map_err(|p| error(name, p))?,
        })
    }

    pub fn number(&self, name: &str, default: u64, range: (u64, u64)) -> Result<u64, ConfigError> {
        EnvVars(self.0).number(name, default, range)
    }

    pub fn timeout(&self) -> Result<Duration, ConfigError> {
        EnvVars(self.0).timeout()
    }
}

pub(crate) fn parse_base_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v).map_err(|e| format!("`{v}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{v}` must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{v}` must not carry a query or fragment"));
    }
    if url.host_str().is_none() {
        return Err(format!("`{v}` has no host"));
    }
    Ok(url)
}

/// `base` with `segments` appended as path segments, each percent-encoded as needed: a base
/// with a path prefix (`https://host/prometheus`) keeps it.
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    url
}

/// `base` followed by a fixed path such as `api/v1/query_range`.
pub(crate) fn endpoint_path(base: &Url, path: &str) -> Url {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    endpoint(base, &segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_prefix() {
        let base = parse_base_url("https://host/prometheus/").unwrap();
        assert_eq!(
            endpoint_path(&base, "api/v1/query_range").as_str(),
            "https://host/prometheus/api/v1/query_range"
        );
        let root = parse_base_url("http://127.0.0.1:9090").unwrap();
        assert_eq!(
            endpoint(&root, &["repos", "a b", "deployments"]).as_str(),
            "http://127.0.0.1:9090/repos/a%20b/deployments"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(parse_base_url("prometheus:9090").is_err());
        assert!(parse_base_url("ftp://x").is_err());
        assert!(parse_base_url("http://x/?a=b").is_err());
    }
}

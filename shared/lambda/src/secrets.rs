//! Secrets by name: on AWS a secret's value lives in SSM Parameter Store (a SecureString, or a
//! Secrets Manager secret through `/aws/reference/secretsmanager/<name>`), and the function's
//! environment carries only the parameter's NAME in `<VAR>_PARAM`. Locally the plain `<VAR>`
//! still works. A named parameter that cannot be read stops the cold start: a webhook that
//! silently lost its secret would accept anyone's alerts.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::BootError;

/// Signs and verifies approval links.
pub const APPROVAL_SIGNING_KEY: &str = "APPROVAL_SIGNING_KEY";
/// Bearer keys for `POST /incidents/{id}/approve|reject`.
pub const APPROVAL_API_KEY: &str = "APPROVAL_API_KEY";
/// Authenticates `POST /webhook/alert` (and every source's route without a secret of its own).
pub const WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";

/// Every secret a function may be given: IRAS's own keys, then the integrations' credentials
/// (read by `iras-adapters` and `iras-llm` under these same names).
pub const ALL: [&str; 24] = [
    APPROVAL_SIGNING_KEY,
    APPROVAL_API_KEY,
    // Named approval keys, name:key,name:key.
    "APPROVAL_API_KEYS",
    // Signs audit log entries (`iras_core::config::AUDIT_SIGNING_KEY`).
    "AUDIT_SIGNING_KEY",
    // Read-only keys for the incident API.
    "READ_API_KEYS",
    WEBHOOK_SECRET,
    // A monitoring tool's own webhook secret (`iras_intake::Source::secret_var`).
    "WEBHOOK_SECRET_ALERTMANAGER",
    "WEBHOOK_SECRET_GRAFANA",
    "WEBHOOK_SECRET_DATADOG",
    "WEBHOOK_SECRET_PAGERDUTY",
    "WEBHOOK_SECRET_OPSGENIE",
    "WEBHOOK_SECRET_SENTRY",
    "WEBHOOK_SECRET_SNS",
    "WEBHOOK_SECRET_CLOUDWATCH",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "PAGERDUTY_INTEGRATION_KEY",
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "PROMETHEUS_BEARER_TOKEN",
    "LOKI_BEARER_TOKEN",
    "ELASTICSEARCH_PASSWORD",
    "ELASTICSEARCH_API_KEY",
    "REMEDIATION_RUNNER_SECRET",
];

/// The variable naming the parameter that holds `var` (`APPROVAL_SIGNING_KEY_PARAM`).
pub fn parameter_var(var: &str) -> String {
    format!("{var}_PARAM")
}

/// Reads a parameter's decrypted value by name.
#[async_trait]
pub trait ParameterStore: Send + Sync {
    async fn get(&self, name: &str) -> Result<String, String>;
}

/// SSM Parameter Store, with decryption (SecureString).
pub struct SsmParameters(pub aws_sdk_ssm::Client);

#[async_trait]
impl ParameterStore for SsmParameters {
    async fn get(&self, name: &str) -> Result<String, String> {
        let out = self
            .0
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| aws_sdk_ssm::error::DisplayErrorContext(e).to_string())?;
        out.parameter()
            .and_then(|p| p.value())
            .map(str::to_string)
            .ok_or_else(|| "the parameter has no value".to_string())
    }
}

fn non_blank<'a>(vars: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    iras_core::config::EnvVars(vars).get(key)
}

/// The value of secret `var`: from the parameter named in `<var>_PARAM` when set, else from
/// `<var>` itself, else none.
pub async fn resolve(
    vars: &HashMap<String, String>,
    var: &str,
    store: &dyn ParameterStore,
) -> Result<Option<String>, BootError> {
    let Some(name) = non_blank(vars, &parameter_var(var)) else {
        return Ok(non_blank(vars, var).map(str::to_string));
    };
    let failed = |problem: String| BootError::Secret {
        var: var.to_string(),
        parameter: name.to_string(),
        problem,
    };
    let value = store.get(name).await.map_err(failed)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(failed("the parameter is empty".into()));
    }
    Ok(Some(value.to_string()))
}

/// `vars` with every secret named in it replaced by its value, ready for the crates' own
/// `from_vars` parsers (`HttpConfig`, ...). Parameters are read only for secrets named.
pub async fn with_secrets(
    mut vars: HashMap<String, String>,
    store: &dyn ParameterStore,
) -> Result<HashMap<String, String>, BootError> {
    for var in ALL {
        match resolve(&vars, var, store).await? {
            Some(value) => vars.insert(var.to_string(), value),
            None => vars.remove(var),
        };
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        values: HashMap<String, String>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ParameterStore for Fake {
        async fn get(&self, name: &str) -> Result<String, String> {
            self.asked.lock().unwrap().push(name.to_string());
            self.values
                .get(name)
                .cloned()
                .ok_or_else(|| "ParameterNotFound".to_string())
        }
    }

    use iras_core::testing::vars;

    #[tokio::test]
    async fn a_named_parameter_wins_over_the_plain_variable() {
        let store = Fake {
            values: [("/iras/signing".to_string(), "from-ssm\n".to_string())].into(),
            ..Default::default()
        };
        let v = vars(&[
            ("APPROVAL_SIGNING_KEY_PARAM", "/iras/signing"),
            ("APPROVAL_SIGNING_KEY", "from-env"),
        ]);
        let got = resolve(&v, APPROVAL_SIGNING_KEY, &store).await.unwrap();
        assert_eq!(got.as_deref(), Some("from-ssm"));
    }

    #[tokio::test]
    async fn without_a_parameter_the_plain_variable_is_used_and_ssm_is_not_asked() {
        let store = Fake::default();
        let v = vars(&[("WEBHOOK_SECRET", "local-secret")]);
        let out = with_secrets(v, &store).await.unwrap();
        assert_eq!(
            out.get(WEBHOOK_SECRET).map(String::as_str),
            Some("local-secret")
        );
        assert!(!out.contains_key(APPROVAL_API_KEY));
        assert!(store.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_missing_parameter_stops_the_cold_start_naming_it() {
        let store = Fake::default();
        let v = vars(&[("WEBHOOK_SECRET_PARAM", "/iras/webhook")]);
        let e = resolve(&v, WEBHOOK_SECRET, &store).await.unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("WEBHOOK_SECRET"), "{shown}");
        assert!(shown.contains("/iras/webhook"), "{shown}");
    }

    #[tokio::test]
    async fn an_empty_parameter_is_refused_rather_than_opening_the_webhook() {
        let store = Fake {
            values: [("/iras/webhook".to_string(), "  ".to_string())].into(),
            ..Default::default()
        };
        let v = vars(&[("WEBHOOK_SECRET_PARAM", "/iras/webhook")]);
        assert!(resolve(&v, WEBHOOK_SECRET, &store).await.is_err());
    }

    #[test]
    fn every_sources_own_secret_can_come_from_ssm() {
        for source in iras_intake::Source::ALL {
            if source != iras_intake::Source::Generic {
                assert!(ALL.contains(&source.secret_var().as_str()), "{source:?}");
            }
        }
    }
}

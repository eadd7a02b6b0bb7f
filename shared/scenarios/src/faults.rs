//! Datasets name their injected faults their own way; IRAS names the kind of fault a plan acts
//! on ([`iras_core::analyst::rca::FAULT_TYPES`]). `iras eval` scores the fault type through
//! this table: a hypothesis is right when its fault is one of the IRAS types listed for the
//! scenario's label (`truth.fault_class` when the file has one, else `truth.fault`). A label
//! that is itself an IRAS fault type (the synthetic set) counts as itself; a label in neither is
//! not scored.
//!
//! | dataset | label | IRAS fault types that count as right | why |
//! |---|---|---|---|
//! | Nezha | `cpu_contention`, `cpu_consumed` | `cpu_saturation` | a CPU stress process in the pod |
//! | Nezha | `network_delay` | `network_delay` | latency added on the pod's network |
//! | Nezha | `exception`, `return` | `code_error` | a method throws or returns a wrong value; no deployment is recorded |
//! | PetShop | `delay` | `network_delay` | a sleep or delay parameter in the service: added latency, no errors |
//! | PetShop | `errors` | `code_error`, `bad_deploy`, `config_change` | an error-rate parameter or a code change; the scenarios carry no deployment record, so the evidence can only show errors |
//! | PetShop | `request_overload` | `dynamodb_throttling`, `throttling`, `resource_exhaustion` | a flood of DynamoDB requests: capacity runs out |

use iras_core::analyst::rca::FAULT_TYPES;

/// (dataset, label, IRAS fault types that count as right): the table above.
pub const FAULT_TABLE: &[(&str, &str, &[&str])] = &[
    ("nezha", "cpu_contention", &["cpu_saturation"]),
    ("nezha", "cpu_consumed", &["cpu_saturation"]),
    ("nezha", "network_delay", &["network_delay"]),
    ("nezha", "exception", &["code_error"]),
    ("nezha", "return", &["code_error"]),
    ("petshop", "delay", &["network_delay"]),
    (
        "petshop",
        "errors",
        &["code_error", "bad_deploy", "config_change"],
    ),
    (
        "petshop",
        "request_overload",
        &["dynamodb_throttling", "throttling", "resource_exhaustion"],
    ),
];

/// Whether `predicted` is right for the dataset label `label`; `None` when the label is
/// unknown to the table and is no IRAS fault type either.
pub fn fault_matches(label: &str, predicted: &str) -> Option<bool> {
    let label = label.trim();
    if let Some((_, _, accepted)) = FAULT_TABLE.iter().find(|(_, l, _)| *l == label) {
        return Some(accepted.contains(&predicted));
    }
    FAULT_TYPES
        .iter()
        .any(|(f, _)| *f == label && *f != "unknown")
        .then(|| predicted == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_labels_map_to_iras_fault_types() {
        assert_eq!(
            fault_matches("cpu_contention", "cpu_saturation"),
            Some(true)
        );
        assert_eq!(
            fault_matches("network_delay", "cpu_saturation"),
            Some(false)
        );
        assert_eq!(fault_matches("errors", "config_change"), Some(true));
        assert_eq!(fault_matches("bad_deploy", "bad_deploy"), Some(true));
        assert_eq!(fault_matches("bad_deploy", "code_error"), Some(false));
        assert_eq!(fault_matches("issue_x:n=5", "code_error"), None);
        assert_eq!(fault_matches("unknown", "unknown"), None);
    }

    #[test]
    fn every_type_in_the_table_is_one_the_analyst_names() {
        for (_, label, accepted) in FAULT_TABLE {
            for f in *accepted {
                assert!(
                    FAULT_TYPES.iter().any(|(t, _)| t == f),
                    "{label} maps to `{f}`, which the analyst never names"
                );
            }
        }
    }
}

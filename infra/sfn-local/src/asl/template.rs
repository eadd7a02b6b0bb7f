//! Payload templates: the values of `Parameters` and `ResultSelector`.
//!
//! A key ending in `.$` takes its value from a path into the input (`$…`), the context object
//! (`$$…`) or an intrinsic function; the `.$` is dropped from the output key. Other values are
//! copied as they are, and nested objects (also inside arrays) are processed the same way.

use super::failure::StateFailure;
use super::intrinsics::{looks_like_intrinsic, Intrinsic};
use super::path::Path;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Static(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    /// Carries the key as written (with `.$`) for error messages.
    Path {
        key: String,
        path: Path,
    },
    Intrinsic {
        key: String,
        call: Intrinsic,
    },
}

/// A template that cannot be compiled; `field` is the dotted location (e.g. `Payload.token.$`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub field: String,
    pub message: String,
}

impl Template {
    /// Compiles a template, checking every path and intrinsic function in it.
    pub fn compile(value: &Value) -> Result<Template, TemplateError> {
        compile(value, "")
    }

    /// True when nothing in the template reads the input or the context.
    pub fn is_static(&self) -> bool {
        match self {
            Template::Static(_) => true,
            Template::Object(fields) => fields.iter().all(|(_, t)| t.is_static()),
            Template::Array(items) => items.iter().all(Template::is_static),
            Template::Path { .. } | Template::Intrinsic { .. } => false,
        }
    }

    /// Looks up a top-level field of an object template by its output key.
    pub fn field(&self, name: &str) -> Option<&Template> {
        match self {
            Template::Object(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, t)| t),
            _ => None,
        }
    }

    /// The output keys of an object template.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Template::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn evaluate(&self, input: &Value, context: &Value) -> Result<Value, StateFailure> {
        match self {
            Template::Static(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut out = Map::new();
                for (k, t) in fields {
                    out.insert(k.clone(), t.evaluate(input, context)?);
                }
                Ok(Value::Object(out))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.evaluate(input, context))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Path { key, path } => path.select(input, context).ok_or_else(|| {
                let (what, doc) = if path.is_context() {
                    ("context object", context)
                } else {
                    ("input", input)
                };
                StateFailure::runtime(format!(
                    "The JSONPath '{}' specified for the field '{key}' could not be found in the {what} '{doc}'",
                    path.text()
                ))
            }),
            Template::Intrinsic { call, .. } => call.evaluate(input, context),
        }
    }
}

fn compile(value: &Value, at: &str) -> Result<Template, TemplateError> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match value {
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                let field = join(k);
                if let Some(out_key) = k.strip_suffix(".$") {
                    let Value::String(expr) = v else {
                        return Err(TemplateError {
                            field,
                            message: "a key ending in \".$\" must have a string value (a path or an intrinsic function)".into(),
                        });
                    };
                    if m.contains_key(out_key) {
                        return Err(TemplateError {
                            field,
                            message: format!("both \"{out_key}\" and \"{k}\" are present"),
                        });
                    }
                    let t = if expr.starts_with('$') {
                        Template::Path {
                            key: k.clone(),
                            path: Path::parse(expr).map_err(|e| TemplateError {
                                field: field.clone(),
                                message: e.0,
                            })?,
                        }
                    } else if looks_like_intrinsic(expr) {
                        Template::Intrinsic {
                            key: k.clone(),
                            call: Intrinsic::parse(expr).map_err(|message| TemplateError {
                                field: field.clone(),
                                message,
                            })?,
                        }
                    } else {
                        return Err(TemplateError {
                            field,
                            message: format!(
                                "\"{expr}\" is neither a path (starting with '$') nor an intrinsic function (starting with 'States.')"
                            ),
                        });
                    };
                    fields.push((out_key.to_string(), t));
                } else {
                    fields.push((k.clone(), compile(v, &field)?));
                }
            }
            Ok(Template::Object(fields))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| compile(v, &format!("{at}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Template::Array),
        other => Ok(Template::Static(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The Parameters example from "Manipulate parameters in Step Functions workflows".
    #[test]
    fn parameters_example_from_the_docs() {
        let input = json!({
            "comment": "Example for Parameters.",
            "product": {
                "details": {"color": "blue", "size": "small", "material": "cotton"},
                "availability": "in stock",
                "sku": "2317",
                "cost": "$23"
            }
        });
        let t = Template::compile(&json!({
            "comment": "Selecting what I care about.",
            "MyDetails": {
                "size.$": "$.product.details.size",
                "exists.$": "$.product.availability",
                "StaticValue": "foo"
            }
        }))
        .unwrap();
        assert_eq!(
            t.evaluate(&input, &json!({})).unwrap(),
            json!({
                "comment": "Selecting what I care about.",
                "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"}
            })
        );
    }

    /// Parameters can mix the input and the context object (the task-token example).
    #[test]
    fn input_and_context_object() {
        let t =
            Template::compile(&json!({"Input.$": "$", "TaskToken.$": "$$.Task.Token"})).unwrap();
        let out = t
            .evaluate(&json!({"a": 1}), &json!({"Task": {"Token": "tok"}}))
            .unwrap();
        assert_eq!(out, json!({"Input": {"a": 1}, "TaskToken": "tok"}));
    }

    #[test]
    fn objects_inside_arrays_and_intrinsics() {
        let t = Template::compile(&json!({
            "MetricData": [{"MetricName": "Latency", "Value.$": "$.ms"}],
            "Id.$": "States.Format('inc-{}', $.id)"
        }))
        .unwrap();
        assert!(!t.is_static());
        assert_eq!(
            t.evaluate(&json!({"ms": 12, "id": 7}), &json!({})).unwrap(),
            json!({"MetricData": [{"MetricName": "Latency", "Value": 12}], "Id": "inc-7"})
        );
    }

    #[test]
    fn missing_path_is_states_runtime_naming_the_field() {
        let t = Template::compile(&json!({"userId.$": "$.detail.userId"})).unwrap();
        let err = t.evaluate(&json!({"detail": {}}), &json!({})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(err.cause.contains("'$.detail.userId'"), "{}", err.cause);
        assert!(err.cause.contains("'userId.$'"), "{}", err.cause);
    }

    #[test]
    fn compile_errors_name_the_field() {
        let e = Template::compile(&json!({"Payload": {"x.$": 3}})).unwrap_err();
        assert_eq!(e.field, "Payload.x.$");
        let e = Template::compile(&json!({"a.$": "not a path"})).unwrap_err();
        assert_eq!(e.field, "a.$");
        let e = Template::compile(&json!({"l": [{"b.$": "States.Bogus()"}]})).unwrap_err();
        assert_eq!(e.field, "l[0].b.$");
        assert!(e.message.contains("unknown intrinsic"));
        let e = Template::compile(&json!({"a.$": "$..x"})).unwrap_err();
        assert!(e.message.contains("recursive descent"));
    }
}

//! Task invocation and task tokens: calling a state's Lambda function, issuing and settling
//! `.waitForTaskToken` tokens, and handing a task's result or error to ResultPath, Retry and
//! Catch.

use super::step::{leave, ExecCtx, Exit, Outcome};
use super::{event, now_ms, sleep_until_ms, Runtime, RuntimeEvent};
use crate::asl::retry::{self, RetryDecision};
use crate::asl::{errors, io, Resource, State, StateFailure, TaskState};
use crate::exec_store::{
    ms_to_datetime, Cursor, HistoryEventType, Phase, SettleResult, Settlement, StoreError,
    TokenRecord, TokenStatus,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;

/// The error a function reports, as Lambda's `errorType` / `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    pub error_type: String,
    pub message: String,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        FunctionError {
            error_type: error_type.into(),
            message: message.into(),
        }
    }
}

/// An in-process stand-in for a Lambda function.
#[async_trait::async_trait]
pub trait LambdaFunction: Send + Sync {
    /// `payload` is what Lambda would receive; an Err carries the function's errorType/errorMessage.
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError>;
}

/// Functions by ARN. A task's `FunctionName` (or direct Resource ARN) is looked up exactly
/// first, then by function name (ignoring region, account and qualifier).
pub type FunctionRegistry = HashMap<String, Arc<dyn LambdaFunction>>;

enum Invoked {
    Returned(Value),
    Failed(StateFailure),
    DeadlinePassed,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An unguessable task token: 32 random bytes, hex-encoded.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .expect("the operating system must provide randomness for task tokens");
    hex::encode(bytes)
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the operating system must provide randomness");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The function name inside a name or ARN (`name`, `name:alias`, `acct:function:name`, full ARN).
fn function_name_of(s: &str) -> &str {
    let rest = match s.find(":function:") {
        Some(i) => &s[i + ":function:".len()..],
        None => s,
    };
    rest.split(':').next().unwrap_or(rest)
}

fn function_failure(e: FunctionError) -> StateFailure {
    let error = if e.error_type.is_empty() {
        errors::LAMBDA_UNKNOWN.to_string()
    } else {
        e.error_type.clone()
    };
    StateFailure::new(
        error,
        json!({"errorMessage": e.message, "errorType": e.error_type}).to_string(),
    )
}

/// The result of the optimized `lambda:invoke` integration, shaped like the service's.
fn lambda_invoke_result(payload: Value) -> Value {
    let id = request_id();
    json!({
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "HttpHeaders": {
                "Content-Type": "application/json",
                "X-Amz-Executed-Version": "$LATEST",
                "x-amzn-RequestId": id
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": id},
        "StatusCode": 200
    })
}

/// `FunctionName` and the payload from the effective parameters of `lambda:invoke`.
fn invoke_parameters(effective: &Value) -> Result<(String, Value), StateFailure> {
    let function = effective
        .get("FunctionName")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            StateFailure::runtime(format!(
                "The parameter FunctionName of lambda:invoke must be a string, in {effective}"
            ))
        })?;
    let payload = match effective.get("Payload") {
        None => json!({}),
        // A string holding JSON reaches the function as that JSON, as with the service.
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(v) => v.clone(),
    };
    Ok((function.to_string(), payload))
}

impl Runtime {
    fn resolve_function(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        if let Some(f) = self.functions.get(name) {
            return Some(f.clone());
        }
        let wanted = function_name_of(name);
        let mut found = self
            .functions
            .iter()
            .filter(|(k, _)| function_name_of(k) == wanted);
        match (found.next(), found.next()) {
            (Some((_, f)), None) => Some(f.clone()),
            _ => None,
        }
    }

    /// Invokes a function on its own task (a panic becomes `Lambda.Unknown`), giving up at the
    /// deadline. Dropping the returned future aborts the call.
    async fn invoke_until(
        &self,
        function: &str,
        payload: Value,
        deadline_ms: Option<i64>,
    ) -> Invoked {
        let Some(func) = self.resolve_function(function) else {
            return Invoked::Failed(StateFailure::new(
                errors::LAMBDA_RESOURCE_NOT_FOUND,
                format!("Function not found: {function} (Service: AWSLambda; Status Code: 404; Error Code: ResourceNotFoundException)"),
            ));
        };
        let Some(handle) = self.spawn_tracked(async move { func.invoke(payload).await }) else {
            return Invoked::Failed(StateFailure::runtime("The runtime was killed"));
        };
        let _abort = AbortOnDrop(handle.abort_handle());
        let call = async move {
            match handle.await {
                Ok(Ok(v)) => Invoked::Returned(v),
                Ok(Err(e)) => Invoked::Failed(function_failure(e)),
                Err(e) if e.is_panic() => Invoked::Failed(StateFailure::new(
                    errors::LAMBDA_UNKNOWN,
                    json!({"errorMessage": "The function panicked", "errorType": "Panic"})
                        .to_string(),
                )),
                Err(_) => Invoked::Failed(StateFailure::runtime("The function call was cancelled")),
            }
        };
        match deadline_ms {
            None => call.await,
            Some(d) => tokio::select! {
                r = call => r,
                _ = sleep_until_ms(d) => Invoked::DeadlinePassed,
            },
        }
    }

    pub(super) async fn attempt_task(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &mut Cursor,
        state: &State,
        task: &TaskState,
    ) -> Result<Outcome, StoreError> {
        let selected = match io::input_path(&cursor.state_input, state.input_path.as_ref()) {
            Ok(v) => v,
            Err(failure) => return Ok(Outcome::Failed { failure }),
        };
        let timeout = match io::task_timeout_seconds(task, &selected) {
            Ok(Some(s)) => Some(Duration::from_secs(s)),
            Ok(None) => self.options.default_task_timeout,
            Err(failure) => return Ok(Outcome::Failed { failure }),
        };
        let deadline_ms =
            timeout.map(|d| now_ms() + d.as_millis().min(i64::MAX as u128 / 2) as i64);
        let resource_name = match &task.resource {
            Resource::LambdaFunction { arn } => arn.clone(),
            Resource::LambdaInvoke {
                wait_for_task_token: false,
            } => "arn:aws:states:::lambda:invoke".into(),
            Resource::LambdaInvoke {
                wait_for_task_token: true,
            } => "arn:aws:states:::lambda:invoke.waitForTaskToken".into(),
        };
        let scheduled = |parameters: &Value| {
            event(
                HistoryEventType::TaskScheduled,
                Some(&state.name),
                json!({"resource": resource_name, "parameters": parameters, "timeoutSeconds": timeout.map(|d| d.as_secs())}),
            )
        };
        match &task.resource {
            Resource::LambdaInvoke {
                wait_for_task_token: true,
            } => {
                let token = new_token();
                let context = self.context_object(ctx, cursor, Some(&token));
                let effective =
                    match io::apply_template(task.parameters.as_ref(), selected, &context) {
                        Ok(v) => v,
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    };
                let (function, payload) = match invoke_parameters(&effective) {
                    Ok(x) => x,
                    Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                };
                let rec = TokenRecord {
                    token: token.clone(),
                    execution: ctx.name.clone(),
                    state: state.name.clone(),
                    status: TokenStatus::Waiting,
                    function,
                    payload,
                    invoked: false,
                    deadline_ms,
                    output: None,
                    error: None,
                    cause: None,
                    created_ms: now_ms(),
                    completed_ms: None,
                };
                cursor.phase = Phase::Token {
                    token: token.clone(),
                };
                // The token is durable before the function can see it.
                if !self
                    .store
                    .advance(
                        &ctx.name,
                        cursor.clone(),
                        None,
                        vec![scheduled(&effective)],
                        Some(rec.clone()),
                    )
                    .await?
                {
                    return Ok(Outcome::Stopped);
                }
                if let Some(d) = deadline_ms {
                    self.arm_token_timer(&token, &ctx.name, d);
                }
                self.emit(RuntimeEvent::TaskTokenIssued {
                    execution: ctx.name.clone(),
                    state: state.name.clone(),
                    token,
                    deadline: deadline_ms.map(ms_to_datetime),
                });
                self.invoke_for_token(ctx, cursor, state, task, rec).await
            }
            resource => {
                let context = self.context_object(ctx, cursor, None);
                let effective =
                    match io::apply_template(task.parameters.as_ref(), selected, &context) {
                        Ok(v) => v,
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    };
                let (function, payload, integration) = match resource {
                    Resource::LambdaFunction { arn } => (arn.clone(), effective.clone(), false),
                    Resource::LambdaInvoke { .. } => match invoke_parameters(&effective) {
                        Ok((f, p)) => (f, p, true),
                        Err(f) => return self.task_failed(ctx, cursor, state, task, f).await,
                    },
                };
                self.store
                    .append_events(&ctx.name, vec![scheduled(&effective)])
                    .await?;
                match self.invoke_until(&function, payload, deadline_ms).await {
                    Invoked::Returned(out) => {
                        let result = if integration {
                            lambda_invoke_result(out)
                        } else {
                            out
                        };
                        self.task_succeeded(ctx, cursor, state, task, result).await
                    }
                    Invoked::Failed(f) => self.task_failed(ctx, cursor, state, task, f).await,
                    Invoked::DeadlinePassed => {
                        let secs = timeout.map(|d| d.as_secs()).unwrap_or_default();
                        let f = StateFailure::timeout(format!(
                            "The task did not finish within {secs} seconds"
                        ));
                        self.task_failed(ctx, cursor, state, task, f).await
                    }
                }
            }
        }
    }

    /// Invokes the function of a `.waitForTaskToken` task, then goes on from the token's state.
    async fn invoke_for_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        rec: TokenRecord,
    ) -> Result<Outcome, StoreError> {
        let after = match self
            .invoke_until(&rec.function, rec.payload.clone(), rec.deadline_ms)
            .await
        {
            Invoked::Returned(_) => {
                let submitted = event(
                    HistoryEventType::TaskSubmitted,
                    Some(&state.name),
                    json!({}),
                );
                self.store.mark_invoked(&rec.token, vec![submitted]).await?
            }
            Invoked::Failed(f) => match self
                .store
                .settle_token(
                    &rec.token,
                    Settlement::Failure {
                        error: f.error,
                        cause: f.cause,
                    },
                )
                .await?
            {
                SettleResult::Settled(r) | SettleResult::NotWaiting(r) => Some(r),
                SettleResult::Unknown => None,
            },
            Invoked::DeadlinePassed => match self
                .store
                .settle_token(&rec.token, Settlement::TimedOut)
                .await?
            {
                SettleResult::Settled(r) | SettleResult::NotWaiting(r) => Some(r),
                SettleResult::Unknown => None,
            },
        };
        match after {
            Some(r) => self.continue_from_token(ctx, cursor, state, task, r).await,
            None => Ok(Outcome::Failed {
                failure: StateFailure::runtime("The task token disappeared from the store"),
            }),
        }
    }

    pub(super) async fn resume_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        token: &str,
    ) -> Result<Outcome, StoreError> {
        let Some(rec) = self.store.token(token).await? else {
            return Ok(Outcome::Failed {
                failure: StateFailure::runtime("The task token disappeared from the store"),
            });
        };
        if rec.status == TokenStatus::Waiting {
            if let Some(d) = rec.deadline_ms {
                self.arm_token_timer(&rec.token, &ctx.name, d);
            }
            if !rec.invoked {
                // The process died before the function returned: it is idempotent, call it again
                // with the same token.
                return self.invoke_for_token(ctx, cursor, state, task, rec).await;
            }
            return Ok(Outcome::Parked);
        }
        self.continue_from_token(ctx, cursor, state, task, rec)
            .await
    }

    async fn continue_from_token(
        self: &Arc<Self>,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        rec: TokenRecord,
    ) -> Result<Outcome, StoreError> {
        if rec.status != TokenStatus::Waiting {
            self.disarm_token_timer(&rec.token);
        }
        match rec.status {
            TokenStatus::Waiting => Ok(Outcome::Parked),
            TokenStatus::Cancelled => Ok(Outcome::Stopped),
            TokenStatus::Succeeded => {
                let output = rec.output.unwrap_or(Value::Null);
                self.task_succeeded(ctx, cursor, state, task, output).await
            }
            TokenStatus::Failed => {
                let f =
                    StateFailure::new(rec.error.unwrap_or_default(), rec.cause.unwrap_or_default());
                self.task_failed(ctx, cursor, state, task, f).await
            }
            TokenStatus::TimedOut => {
                let f = StateFailure::timeout(
                    "The task was not completed with its token before its timeout",
                );
                self.task_failed(ctx, cursor, state, task, f).await
            }
        }
    }

    async fn task_succeeded(
        &self,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        result: Value,
    ) -> Result<Outcome, StoreError> {
        self.store
            .append_events(
                &ctx.name,
                vec![event(
                    HistoryEventType::TaskSucceeded,
                    Some(&state.name),
                    json!({"output": result}),
                )],
            )
            .await?;
        let context = self.context_object(ctx, cursor, None);
        match io::place_task_result(task, &cursor.state_input, result.clone(), &context) {
            Ok(placed) => Ok(match io::output_path(&placed, state.output_path.as_ref()) {
                Ok(out) => leave(
                    &task.transition,
                    out,
                    Exit {
                        task_result: Some(result),
                        error: None,
                    },
                ),
                Err(failure) => Outcome::Failed { failure },
            }),
            Err(f) => self.task_failed(ctx, cursor, state, task, f).await,
        }
    }

    /// Applies Retry, then Catch, to a task's error.
    async fn task_failed(
        &self,
        ctx: &ExecCtx,
        cursor: &Cursor,
        state: &State,
        task: &TaskState,
        failure: StateFailure,
    ) -> Result<Outcome, StoreError> {
        let event_type = if failure.error == errors::TIMEOUT {
            HistoryEventType::TaskTimedOut
        } else {
            HistoryEventType::TaskFailed
        };
        self.store
            .append_events(
                &ctx.name,
                vec![event(
                    event_type,
                    Some(&state.name),
                    json!({"error": failure.error, "cause": failure.cause}),
                )],
            )
            .await?;
        if let RetryDecision::Retry {
            retrier,
            delay_seconds,
        } = retry::decide(&task.retry, &cursor.retry_counts, &failure.error)
        {
            return Ok(Outcome::Retry {
                failure,
                retrier,
                delay_seconds,
            });
        }
        self.emit(RuntimeEvent::TaskFailed {
            execution: ctx.name.clone(),
            state: state.name.clone(),
            error: failure.error.clone(),
            cause: failure.cause.clone(),
            retry: None,
        });
        let Some(catcher) = retry::find_catcher(&task.catch, &failure.error) else {
            return Ok(Outcome::Failed { failure });
        };
        Ok(
            match io::catch_output(catcher, &cursor.state_input, &failure) {
                Ok(input) => Outcome::Transition {
                    next: catcher.next.clone(),
                    input,
                    exit: Exit {
                        task_result: None,
                        error: Some(failure),
                    },
                },
                Err(f) => Outcome::Failed { failure: f },
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn function_names_resolve_from_arns_and_qualifiers() {
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:123456789012:function:triage"),
            "triage"
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:123456789012:function:triage:prod"),
            "triage"
        );
        assert_eq!(function_name_of("123456789012:function:triage"), "triage");
        assert_eq!(function_name_of("triage:$LATEST"), "triage");
        assert_eq!(function_name_of("triage"), "triage");
    }

    #[test]
    fn function_errors_become_lambda_shaped_causes() {
        let f = function_failure(FunctionError::new("HandledError", "boom"));
        assert_eq!(f.error, "HandledError");
        assert_eq!(
            f.cause,
            r#"{"errorMessage":"boom","errorType":"HandledError"}"#
        );
        assert_eq!(
            function_failure(FunctionError::new("", "x")).error,
            "Lambda.Unknown"
        );
    }

    #[test]
    fn lambda_invoke_parameters_and_result_shape() {
        let (f, p) = invoke_parameters(&json!({"FunctionName": "f", "Payload": {"a": 1}})).unwrap();
        assert_eq!((f.as_str(), p), ("f", json!({"a": 1})));
        let (_, p) = invoke_parameters(&json!({"FunctionName": "f"})).unwrap();
        assert_eq!(p, json!({}));
        let (_, p) =
            invoke_parameters(&json!({"FunctionName": "f", "Payload": "{\"a\":2}"})).unwrap();
        assert_eq!(p, json!({"a": 2}));
        assert_eq!(
            invoke_parameters(&json!({"FunctionName": 3}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        let r = lambda_invoke_result(json!("Hello from Lambda!"));
        assert_eq!(r["Payload"], json!("Hello from Lambda!"));
        assert_eq!(r["StatusCode"], json!(200));
        assert_eq!(r["ExecutedVersion"], json!("$LATEST"));
        assert_eq!(r["SdkHttpMetadata"]["HttpStatusCode"], json!(200));
    }
}

//! Step Functions: starting an incident's execution and completing its approval task.

use async_trait::async_trait;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::Client;
use iras_core::ports::{CallbackError, PipelineStarter, StartError, TaskCallbacks};
use iras_core::IncidentId;
use serde_json::{json, Value};

use crate::describe;

/// Starts the pipeline with `StartExecution`, naming the execution after the incident.
#[derive(Clone)]
pub struct SfnStarter {
    client: Client,
    state_machine_arn: String,
}

impl SfnStarter {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        SfnStarter {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl PipelineStarter for SfnStarter {
    async fn start(&self, id: &IncidentId) -> Result<(), StartError> {
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(id.as_str())
            // Only the id travels: stages read everything else from the store.
            .input(json!({ "incident_id": id }).to_string())
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(()),
            // The name is the incident: an execution by that name is this incident's pipeline,
            // started by an earlier try of the same request.
            Err(StartExecutionError::ExecutionAlreadyExists(_)) => {
                tracing::info!(incident = %id, "execution already started");
                Ok(())
            }
            Err(e) => Err(StartError(describe(&e))),
        }
    }
}

/// Completes `.waitForTaskToken` tasks with `SendTaskSuccess` / `SendTaskFailure`.
#[derive(Clone)]
pub struct SfnCallbacks {
    client: Client,
}

impl SfnCallbacks {
    pub fn new(client: Client) -> Self {
        SfnCallbacks { client }
    }
}

/// Step Functions caps `error` at 256 and `cause` at 32,768 characters.
fn clip(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[async_trait]
impl TaskCallbacks for SfnCallbacks {
    async fn send_task_success(
        &self,
        task_token: &str,
        output: Value,
    ) -> Result<(), CallbackError> {
        let result = self
            .client
            .send_task_success()
            .task_token(task_token)
            .output(output.to_string())
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(()),
            Err(SendTaskSuccessError::InvalidToken(_)) => Err(CallbackError::InvalidToken),
            // Either way the task is gone: the decision came too late.
            Err(SendTaskSuccessError::TaskTimedOut(_))
            | Err(SendTaskSuccessError::TaskDoesNotExist(_)) => Err(CallbackError::TaskTimedOut),
            Err(e) => Err(CallbackError::Unavailable(describe(&e))),
        }
    }

    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), CallbackError> {
        let result = self
            .client
            .send_task_failure()
            .task_token(task_token)
            .error(clip(error, 256))
            .cause(clip(cause, 32_768))
            .send()
            .await;
        match result.map_err(SdkError::into_service_error) {
            Ok(_) => Ok(()),
            Err(SendTaskFailureError::InvalidToken(_)) => Err(CallbackError::InvalidToken),
            Err(SendTaskFailureError::TaskTimedOut(_))
            | Err(SendTaskFailureError::TaskDoesNotExist(_)) => Err(CallbackError::TaskTimedOut),
            Err(e) => Err(CallbackError::Unavailable(describe(&e))),
        }
    }
}

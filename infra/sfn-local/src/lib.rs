//! A local AWS Step Functions engine: it loads an Amazon States Language definition and runs
//! executions of it on one machine, durably, with each Task's Lambda function in-process.
//!
//! What it is:
//! * an interpreter for the **JSONPath** query language of ASL with **STANDARD** workflow
//!   semantics: every state transition, retry and wait is persisted in SQLite before it takes
//!   effect, so a process that dies resumes each running execution where it stood, and a
//!   `.waitForTaskToken` task can wait for days;
//! * states `Pass`, `Task`, `Choice`, `Wait`, `Succeed` and `Fail`; Task resources
//!   `arn:aws:states:::lambda:invoke`, `arn:aws:states:::lambda:invoke.waitForTaskToken` and
//!   Lambda function ARNs, with `TimeoutSeconds`/`TimeoutSecondsPath`;
//! * `InputPath`, `Parameters`, `ResultSelector`, `ResultPath` and `OutputPath`; the context
//!   object (`$$`); Choice rules; `Retry` (backoff, `MaxDelaySeconds`, `JitterStrategy`) and
//!   `Catch`; the state machine's `TimeoutSeconds`; every intrinsic function but `States.Hash`
//!   (`States.JsonMerge` shallow only; see [`asl::intrinsics`]); reference paths without
//!   recursive descent, filters or unions;
//! * an SFN-like API on [`Runtime`]: start, describe, list, stop, history and
//!   `SendTaskSuccess`/`SendTaskFailure`, plus live [`RuntimeEvent`]s.
//!
//! What it is not: JSONata, variables (`Assign`), `Map` and `Parallel` states, heartbeats,
//! other service integrations, EXPRESS workflows or a network API. A definition using any of
//! these is refused when it loads, naming the state and field, so a definition that loads is
//! one the engine can run. It knows nothing of the application whose functions it runs.

pub mod asl;
pub mod exec_store;
pub mod runtime;

pub use asl::{Definition, DefinitionError, StateFailure, StateType};
pub use exec_store::{ExecutionStatus, HistoryEvent, HistoryEventType};
pub use runtime::{
    ExecutionInfo, FunctionError, FunctionRegistry, LambdaFunction, PendingTask, RetryInfo,
    Runtime, RuntimeError, RuntimeEvent, RuntimeOptions,
};

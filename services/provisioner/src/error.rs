//! Errors at the provider boundary. A reconciler must branch on them (retry now, requeue, or
//! report `error` to the user), so they are an enum, not `anyhow`.

use std::fmt;

/// What went wrong in one cloud-provider operation.
///
/// Every variant names the operation (`"create vpc"`, `"run instances"`, …) so a log line or an
/// API `state_metadata.reason` says what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider asked us to slow down (`RequestLimitExceeded`, `Throttling`, …). Retry
    /// after a backoff.
    #[error("{operation}: throttled by the cloud provider ({code}): {message}")]
    Throttled {
        /// The operation that was throttled.
        operation: String,
        /// The provider's error code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider failed on its side (HTTP 5xx) or could not be reached (timeout, connection
    /// refused). Retry after a backoff.
    #[error("{operation}: the cloud provider is unavailable ({}): {message}", .status.map_or_else(|| "no response".to_string(), |s| format!("HTTP {s}")))]
    Unavailable {
        /// The operation that failed.
        operation: String,
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The provider's message, or the transport error.
        message: String,
    },
    /// The provider refused for now because of another resource's state: a dependency still
    /// being deleted, or a just-created resource not visible yet (eventual consistency).
    /// Retrying later is expected to succeed.
    #[error("{operation}: not possible yet ({code}): {message}")]
    NotReady {
        /// The operation that was refused.
        operation: String,
        /// The provider's error code (`DependencyViolation`, `InvalidVpcID.NotFound`, …).
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider refused the request itself (bad parameter, unknown AMI, no permission).
    /// Retrying the same request will not help; the user has to change something.
    #[error("{operation}: refused by the cloud provider ({code}): {message}")]
    Rejected {
        /// The operation that was refused.
        operation: String,
        /// The provider's error code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider cannot do this at all (the local provider has no transit gateways). A
    /// permanent refusal: the reconciler reports `error` with the message as the reason, word
    /// for word, so the API and the reconciler say the same thing.
    #[error("{message}")]
    Unsupported {
        /// The operation that was refused.
        operation: String,
        /// What the user reads, e.g. "transit gateways are not supported by the local
        /// provider".
        message: String,
    },
    /// Injected by [`crate::FaultyProvider`]: the control plane "died" at this mutating step.
    /// Never retried: the test restarts the reconcile from scratch, as a restarted control
    /// plane would.
    #[error("{operation}: simulated control-plane crash at mutating step {step} ({timing})")]
    Crashed {
        /// The operation at which the crash was injected.
        operation: String,
        /// The 1-based count of mutating calls at which the crash happened.
        step: u64,
        /// Whether the operation was performed before the crash.
        timing: CrashTiming,
    },
    /// Anything else (an answer we could not interpret, a bug); not retried.
    #[error("{operation}: {source:#}")]
    Other {
        /// The operation that failed.
        operation: String,
        /// What went wrong.
        source: anyhow::Error,
    },
}

/// Whether an injected crash happened before or after the provider performed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashTiming {
    /// The call never reached the provider.
    BeforeCall,
    /// The provider performed the call; only its answer was lost.
    AfterCall,
}

impl fmt::Display for CrashTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BeforeCall => "before the call",
            Self::AfterCall => "after the call was performed",
        })
    }
}

impl ProviderError {
    /// Worth retrying the same step after a backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Unavailable { .. } | Self::NotReady { .. }
        )
    }

    /// The provider's error code, when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Throttled { code, .. }
            | Self::NotReady { code, .. }
            | Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A convenience for "the provider answered something we cannot use".
    pub fn other(operation: impl Into<String>, source: anyhow::Error) -> Self {
        Self::Other {
            operation: operation.into(),
            source,
        }
    }
}

/// Why a reconcile pass stopped before converging. The caller keeps the resource's current
/// state, records the message as its reason, and requeues (with its own backoff).
///
/// Problems the user must fix (an AMI that does not exist, an invalid zone) are not errors of
/// the pass: they come back as `state: error` with a reason in the report.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A provider call failed and retries (if any) did not help.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Input the reconciler cannot work with (the API should have refused it).
    #[error("invalid desired state: {0}")]
    InvalidDesiredState(String),
    /// The caller's node registry / join-token issuer failed.
    #[error("control-plane callback failed: {0:#}")]
    Callback(anyhow::Error),
}

impl ReconcileError {
    /// True when the pass was cut short by an injected crash (tests only).
    pub fn is_crash(&self) -> bool {
        matches!(self, Self::Provider(ProviderError::Crashed { .. }))
    }
}

//! Konnect's state names for cloud-gateway resources, and how provider states map onto them.
//!
//! The names (`created`, `initializing`, `pending-acceptance`, …) are the API contract
//! (docs/cloud-gateways.md); serde and `Display` both give them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkState {
    /// Stored, not reconciled yet (set by the API, never by a reconciler).
    Created,
    /// Provider resources are being created.
    Initializing,
    /// VPC, subnets, security group, route table and internet gateway exist.
    Ready,
    /// Was ready, but the provider reports the VPC unusable.
    Offline,
    /// Delete requested; resources are being removed.
    Terminating,
    /// Every provider resource is gone.
    Terminated,
    /// Cannot converge without a user change; see the reason.
    Error,
}

/// Lifecycle of a transit-gateway attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitGatewayState {
    /// Stored, not reconciled yet (set by the API).
    Created,
    /// The attachment is being created, or the network is not ready yet.
    Initializing,
    /// The attachment exists and waits for the transit gateway's owner to accept it.
    PendingAcceptance,
    /// The customer must act on their side (e.g. share the transit gateway again).
    PendingUserAction,
    /// Attached and routed.
    Ready,
    /// Delete requested; routes and the attachment are being removed.
    Terminating,
    /// Routes and attachment are gone.
    Terminated,
    /// Cannot converge without a user change; see the reason.
    Error,
}

/// Lifecycle of a configuration's dataplane group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataplaneGroupState {
    /// Stored, not reconciled yet (set by the API).
    Created,
    /// Nodes are being launched, replaced or are not connected yet.
    Initializing,
    /// `requested_instances` nodes run and are connected to the control plane.
    Ready,
    /// The group was removed from its configuration; nodes are terminating.
    Terminating,
    /// Every node is gone.
    Terminated,
    /// Cannot converge without a user change; see the reason.
    Error,
}

/// An instance's state, as EC2 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Booting.
    Pending,
    /// Up.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped (a gateway node that stopped is replaced).
    Stopped,
    /// Being terminated.
    ShuttingDown,
    /// Gone (stays visible for a while).
    Terminated,
}

impl InstanceState {
    /// Maps an EC2 `InstanceStateName`; `None` for a name this code does not know.
    pub fn from_provider(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            _ => return None,
        })
    }

    /// Pending or running: the instance counts towards `requested_instances`.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    /// Shutting down or terminated: nothing more to do with it.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }
}

/// What an AWS transit-gateway attachment state means for the Fleetgate attachment, and the
/// reason to show with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentPhase {
    /// Still being set up on the provider's side; wait.
    Initializing,
    /// Waits for the transit gateway's owner to accept (`pendingAcceptance`).
    PendingAcceptance,
    /// Usable: routes may point at the transit gateway.
    Available,
    /// Being deleted or already deleted.
    Deleting,
    /// Deleted (AWS keeps deleted attachments visible for a while).
    Deleted,
    /// Rejected or failed: the user must act; the string says how.
    Failed(String),
}

impl AttachmentPhase {
    /// Maps an AWS `TransitGatewayAttachmentState` name.
    pub fn from_provider(state: &str) -> Self {
        match state {
            "initiating" | "initiatingRequest" | "pending" | "modifying" => Self::Initializing,
            "pendingAcceptance" => Self::PendingAcceptance,
            "available" => Self::Available,
            "deleting" => Self::Deleting,
            "deleted" => Self::Deleted,
            "rejected" | "rejecting" => Self::Failed(
                "the transit gateway's owner rejected the attachment; delete this transit gateway and create it again once the share is in order".into(),
            ),
            "failed" | "failing" | "rollingBack" => Self::Failed(format!(
                "the provider reports the attachment {state}; check that the transit gateway is shared with the provider account through the given RAM share"
            )),
            other => Self::Failed(format!("unknown attachment state {other:?} from the provider")),
        }
    }

    /// The Fleetgate state for an attachment that should exist, in this provider phase.
    /// `Available` maps to `Ready` only once routes are in place; the reconciler decides that.
    pub fn desired_state(&self) -> TransitGatewayState {
        match self {
            Self::Initializing => TransitGatewayState::Initializing,
            Self::PendingAcceptance => TransitGatewayState::PendingAcceptance,
            Self::Available => TransitGatewayState::Ready,
            // An attachment that should exist but is being deleted (by someone else) is
            // recreated once gone; until then it is initializing again.
            Self::Deleting | Self::Deleted => TransitGatewayState::Initializing,
            Self::Failed(_) => TransitGatewayState::Error,
        }
    }
}

macro_rules! display_as_serde_name {
    ($($ty:ty => { $($variant:ident = $name:literal),* $(,)? })*) => {$(
        impl $ty {
            /// The contract name of the state.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_serde_name! {
    NetworkState => {
        Created = "created", Initializing = "initializing", Ready = "ready", Offline = "offline",
        Terminating = "terminating", Terminated = "terminated", Error = "error",
    }
    TransitGatewayState => {
        Created = "created", Initializing = "initializing", PendingAcceptance = "pending-acceptance",
        PendingUserAction = "pending-user-action", Ready = "ready", Terminating = "terminating",
        Terminated = "terminated", Error = "error",
    }
    DataplaneGroupState => {
        Created = "created", Initializing = "initializing", Ready = "ready",
        Terminating = "terminating", Terminated = "terminated", Error = "error",
    }
    InstanceState => {
        Pending = "pending", Running = "running", Stopping = "stopping", Stopped = "stopped",
        ShuttingDown = "shutting-down", Terminated = "terminated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_states_map_to_konnect_states() {
        let cases = [
            ("initiating", TransitGatewayState::Initializing),
            ("initiatingRequest", TransitGatewayState::Initializing),
            ("pending", TransitGatewayState::Initializing),
            ("modifying", TransitGatewayState::Initializing),
            ("pendingAcceptance", TransitGatewayState::PendingAcceptance),
            ("available", TransitGatewayState::Ready),
            ("deleting", TransitGatewayState::Initializing),
            ("rejected", TransitGatewayState::Error),
            ("rejecting", TransitGatewayState::Error),
            ("failed", TransitGatewayState::Error),
            ("failing", TransitGatewayState::Error),
            ("rollingBack", TransitGatewayState::Error),
            ("somethingNew", TransitGatewayState::Error),
        ];
        for (aws, expected) in cases {
            assert_eq!(
                AttachmentPhase::from_provider(aws).desired_state(),
                expected,
                "AWS attachment state {aws}"
            );
        }
    }

    #[test]
    fn failed_attachments_say_what_the_user_should_do() {
        let AttachmentPhase::Failed(reason) = AttachmentPhase::from_provider("rejected") else {
            panic!("rejected must be a failure");
        };
        assert!(reason.contains("rejected"), "{reason}");
        let AttachmentPhase::Failed(reason) = AttachmentPhase::from_provider("failed") else {
            panic!("failed must be a failure");
        };
        assert!(reason.contains("RAM share"), "{reason}");
        let AttachmentPhase::Failed(reason) = AttachmentPhase::from_provider("bogus") else {
            panic!("an unknown state must be a failure");
        };
        assert!(reason.contains("\"bogus\""), "{reason}");
    }

    #[test]
    fn instance_states_map_and_classify() {
        for (aws, state, live, gone) in [
            ("pending", InstanceState::Pending, true, false),
            ("running", InstanceState::Running, true, false),
            ("stopping", InstanceState::Stopping, false, false),
            ("stopped", InstanceState::Stopped, false, false),
            ("shutting-down", InstanceState::ShuttingDown, false, true),
            ("terminated", InstanceState::Terminated, false, true),
        ] {
            let mapped = InstanceState::from_provider(aws).expect("a known state");
            assert_eq!(mapped, state);
            assert_eq!(mapped.is_live(), live, "{aws} live");
            assert_eq!(mapped.is_gone(), gone, "{aws} gone");
            assert_eq!(mapped.as_str(), aws, "the name round-trips");
        }
        assert_eq!(InstanceState::from_provider("hibernating"), None);
    }

    #[test]
    fn state_names_are_the_contract_names() {
        assert_eq!(
            TransitGatewayState::PendingAcceptance.to_string(),
            "pending-acceptance"
        );
        assert_eq!(
            serde_json::to_string(&TransitGatewayState::PendingUserAction).expect("serialise"),
            "\"pending-user-action\""
        );
        for state in [
            NetworkState::Created,
            NetworkState::Initializing,
            NetworkState::Ready,
            NetworkState::Offline,
            NetworkState::Terminating,
            NetworkState::Terminated,
            NetworkState::Error,
        ] {
            let json = serde_json::to_string(&state).expect("serialise");
            assert_eq!(json, format!("\"{state}\""), "serde and Display agree");
        }
        assert_eq!(DataplaneGroupState::Terminating.as_str(), "terminating");
    }
}

//! A fault-injecting wrapper around any [`CloudProvider`], so retry, crash and
//! pending-acceptance paths are tested against a real provider (moto) instead of a mock.
//!
//! - Errors, throttling and 5xx on chosen operations (the next n calls, or every n-th call),
//!   either instead of the call or *after* it was performed (the answer is lost: the resource
//!   exists but the reconciler did not hear about it).
//! - "Crash at mutating step k": the k-th mutating call returns [`ProviderError::Crashed`]
//!   (before or after being performed) and every later call fails too, as a dead control plane
//!   makes no more calls. A test then reconciles again through the inner provider, as a
//!   restarted control plane would.
//! - "Hold attachments in pendingAcceptance until accepted": moto makes attachments
//!   `available` at once and does not implement `AcceptTransitGatewayVpcAttachment`, so the
//!   wrapper reports `pendingAcceptance` until the test calls [`FaultyProvider::accept_attachment`]
//!   (the customer accepting on their side).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::{CrashTiming, ProviderError};
use crate::provider::{
    CloudProvider, Instance, InstanceOwner, InternetGateway, LaunchRequest, Operation, RouteTable,
    RouteTarget, SecurityGroup, Subnet, TransitGatewayAttachment, Vpc,
};
use crate::types::{NetworkSpec, TransitGatewaySpec};

/// The error an injected fault produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `RequestLimitExceeded` (retryable).
    Throttle,
    /// HTTP 503 (retryable).
    ServerError,
    /// A permanent refusal with this provider error code.
    Reject(String),
}

impl Fault {
    fn to_error(&self, op: Operation) -> ProviderError {
        let operation = format!("{op:?} (injected)");
        match self {
            Self::Throttle => ProviderError::Throttled {
                operation,
                code: "RequestLimitExceeded".into(),
                message: "Request limit exceeded (injected by FaultyProvider)".into(),
            },
            Self::ServerError => ProviderError::Unavailable {
                operation,
                status: Some(503),
                message: "Service Unavailable (injected by FaultyProvider)".into(),
            },
            Self::Reject(code) => ProviderError::Rejected {
                operation,
                code: code.clone(),
                message: "refused (injected by FaultyProvider)".into(),
            },
        }
    }
}

/// Which calls a fault rule hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The next `remaining` calls (of `op`, or of any operation).
    Next { remaining: u32 },
    /// Every `n`-th call (of `op`, or of any operation), counted from the rule's creation.
    EveryNth { n: u64, seen: u64 },
}

#[derive(Debug, Clone)]
struct Rule {
    op: Option<Operation>,
    trigger: Trigger,
    fault: Fault,
    timing: CrashTiming,
}

#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<Rule>,
    crash_at: Option<(u64, CrashTiming)>,
    crashed: Option<(String, u64, CrashTiming)>,
    mutating_calls: u64,
    calls: HashMap<Operation, u64>,
    injected: u64,
    hold_pending: bool,
    accepted: HashSet<String>,
}

/// What to do once the inner call returned.
enum After {
    Pass,
    Fail(ProviderError),
}

/// Wraps a provider and injects faults into its calls (see the module docs).
pub struct FaultyProvider {
    inner: Arc<dyn CloudProvider>,
    state: Mutex<FaultState>,
}

impl std::fmt::Debug for FaultyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyProvider")
            .field("inner", &self.inner.name())
            .field("state", &*self.state.lock())
            .finish()
    }
}

impl FaultyProvider {
    /// Wraps `inner`; no faults until some are configured.
    pub fn new(inner: Arc<dyn CloudProvider>) -> Self {
        Self {
            inner,
            state: Mutex::new(FaultState::default()),
        }
    }

    /// The next `times` calls of `op` (any operation when `None`) fail with `fault` without
    /// reaching the provider.
    pub fn fail_next(&self, op: Option<Operation>, times: u32, fault: Fault) {
        self.push(
            op,
            Trigger::Next { remaining: times },
            fault,
            CrashTiming::BeforeCall,
        );
    }

    /// The next `times` calls of `op` are performed, then fail with `fault`: the provider did
    /// the work but the caller never hears of it.
    pub fn fail_next_after_call(&self, op: Option<Operation>, times: u32, fault: Fault) {
        self.push(
            op,
            Trigger::Next { remaining: times },
            fault,
            CrashTiming::AfterCall,
        );
    }

    /// Every `n`-th call of `op` (any operation when `None`) fails with `fault`.
    pub fn fail_every_nth(&self, op: Option<Operation>, n: u64, fault: Fault) {
        assert!(n > 0, "fail_every_nth needs n >= 1");
        self.push(
            op,
            Trigger::EveryNth { n, seen: 0 },
            fault,
            CrashTiming::BeforeCall,
        );
    }

    /// The `step`-th mutating call (1-based, counted from now on) crashes, before or after it
    /// is performed; every call after that fails with the same crash.
    pub fn crash_at_mutating_step(&self, step: u64, timing: CrashTiming) {
        let mut s = self.state.lock();
        s.crash_at = Some((s.mutating_calls + step, timing));
    }

    /// Reports attachments the provider calls `available` as `pendingAcceptance` until they
    /// are accepted with [`Self::accept_attachment`].
    pub fn hold_attachments_pending(&self) {
        self.state.lock().hold_pending = true;
    }

    /// The transit gateway's owner accepts the attachment (`tgw-attach-…`).
    pub fn accept_attachment(&self, attachment_id: &str) {
        self.state.lock().accepted.insert(attachment_id.to_string());
    }

    /// Mutating calls made through the wrapper so far (crashed ones included).
    pub fn mutating_calls(&self) -> u64 {
        self.state.lock().mutating_calls
    }

    /// Calls of `op` made through the wrapper so far.
    pub fn calls(&self, op: Operation) -> u64 {
        self.state.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Faults injected so far (crashes not counted).
    pub fn injected_faults(&self) -> u64 {
        self.state.lock().injected
    }

    /// Whether the simulated crash has happened.
    pub fn has_crashed(&self) -> bool {
        self.state.lock().crashed.is_some()
    }

    fn push(&self, op: Option<Operation>, trigger: Trigger, fault: Fault, timing: CrashTiming) {
        self.state.lock().rules.push(Rule {
            op,
            trigger,
            fault,
            timing,
        });
    }

    /// Decides, before the inner call, whether it happens and what follows it.
    fn before(&self, op: Operation) -> Result<After, ProviderError> {
        let mut s = self.state.lock();
        if let Some((operation, step, timing)) = &s.crashed {
            return Err(ProviderError::Crashed {
                operation: format!("{op:?} after the crash in {operation}"),
                step: *step,
                timing: *timing,
            });
        }
        *s.calls.entry(op).or_default() += 1;
        if op.is_mutating() {
            s.mutating_calls += 1;
            if let Some((step, timing)) = s.crash_at {
                if s.mutating_calls == step {
                    s.crashed = Some((format!("{op:?}"), step, timing));
                    let crash = ProviderError::Crashed {
                        operation: format!("{op:?}"),
                        step,
                        timing,
                    };
                    return match timing {
                        CrashTiming::BeforeCall => Err(crash),
                        CrashTiming::AfterCall => Ok(After::Fail(crash)),
                    };
                }
            }
        }
        let mut hit = None;
        for rule in s.rules.iter_mut() {
            if rule.op.is_some_and(|o| o != op) {
                continue;
            }
            let fires = match &mut rule.trigger {
                Trigger::Next { remaining } if *remaining > 0 => {
                    *remaining -= 1;
                    true
                }
                Trigger::Next { .. } => false,
                Trigger::EveryNth { n, seen } => {
                    *seen += 1;
                    *seen % *n == 0
                }
            };
            if fires && hit.is_none() {
                hit = Some((rule.fault.to_error(op), rule.timing));
            }
        }
        s.rules
            .retain(|r| !matches!(r.trigger, Trigger::Next { remaining: 0 }));
        match hit {
            None => Ok(After::Pass),
            Some((err, timing)) => {
                s.injected += 1;
                match timing {
                    CrashTiming::BeforeCall => Err(err),
                    CrashTiming::AfterCall => Ok(After::Fail(err)),
                }
            }
        }
    }

    async fn call<T>(
        &self,
        op: Operation,
        inner: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let after = self.before(op)?;
        let result = inner.await;
        match after {
            After::Pass => result,
            After::Fail(err) => result.and(Err(err)),
        }
    }

    fn held(&self, mut attachment: TransitGatewayAttachment) -> TransitGatewayAttachment {
        let s = self.state.lock();
        if s.hold_pending && attachment.state == "available" && !s.accepted.contains(&attachment.id)
        {
            attachment.state = "pendingAcceptance".into();
        }
        attachment
    }
}

#[async_trait]
impl CloudProvider for FaultyProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn find_vpcs(&self, region: &str, network_id: Uuid) -> Result<Vec<Vpc>, ProviderError> {
        self.call(
            Operation::FindVpcs,
            self.inner.find_vpcs(region, network_id),
        )
        .await
    }
    async fn create_vpc(&self, network: &NetworkSpec) -> Result<Vpc, ProviderError> {
        self.call(Operation::CreateVpc, self.inner.create_vpc(network))
            .await
    }
    async fn delete_vpc(&self, region: &str, vpc_id: &str) -> Result<(), ProviderError> {
        self.call(Operation::DeleteVpc, self.inner.delete_vpc(region, vpc_id))
            .await
    }
    async fn find_subnets(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<Subnet>, ProviderError> {
        self.call(
            Operation::FindSubnets,
            self.inner.find_subnets(region, network_id),
        )
        .await
    }
    async fn create_subnet(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
        availability_zone: &str,
        cidr_block: Ipv4Net,
    ) -> Result<Subnet, ProviderError> {
        self.call(
            Operation::CreateSubnet,
            self.inner
                .create_subnet(network, vpc_id, availability_zone, cidr_block),
        )
        .await
    }
    async fn delete_subnet(&self, region: &str, subnet_id: &str) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteSubnet,
            self.inner.delete_subnet(region, subnet_id),
        )
        .await
    }
    async fn find_security_groups(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<SecurityGroup>, ProviderError> {
        self.call(
            Operation::FindSecurityGroups,
            self.inner.find_security_groups(region, network_id),
        )
        .await
    }
    async fn create_security_group(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<SecurityGroup, ProviderError> {
        self.call(
            Operation::CreateSecurityGroup,
            self.inner.create_security_group(network, vpc_id),
        )
        .await
    }
    async fn open_tcp_port(
        &self,
        region: &str,
        security_group_id: &str,
        port: u16,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::OpenTcpPort,
            self.inner.open_tcp_port(region, security_group_id, port),
        )
        .await
    }
    async fn delete_security_group(
        &self,
        region: &str,
        security_group_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteSecurityGroup,
            self.inner.delete_security_group(region, security_group_id),
        )
        .await
    }
    async fn find_internet_gateways(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<InternetGateway>, ProviderError> {
        self.call(
            Operation::FindInternetGateways,
            self.inner.find_internet_gateways(region, network_id),
        )
        .await
    }
    async fn create_internet_gateway(
        &self,
        network: &NetworkSpec,
    ) -> Result<InternetGateway, ProviderError> {
        self.call(
            Operation::CreateInternetGateway,
            self.inner.create_internet_gateway(network),
        )
        .await
    }
    async fn attach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::AttachInternetGateway,
            self.inner
                .attach_internet_gateway(region, internet_gateway_id, vpc_id),
        )
        .await
    }
    async fn detach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DetachInternetGateway,
            self.inner
                .detach_internet_gateway(region, internet_gateway_id, vpc_id),
        )
        .await
    }
    async fn delete_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteInternetGateway,
            self.inner
                .delete_internet_gateway(region, internet_gateway_id),
        )
        .await
    }
    async fn find_route_tables(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<RouteTable>, ProviderError> {
        self.call(
            Operation::FindRouteTables,
            self.inner.find_route_tables(region, network_id),
        )
        .await
    }
    async fn create_route_table(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<RouteTable, ProviderError> {
        self.call(
            Operation::CreateRouteTable,
            self.inner.create_route_table(network, vpc_id),
        )
        .await
    }
    async fn associate_route_table(
        &self,
        region: &str,
        route_table_id: &str,
        subnet_id: &str,
    ) -> Result<String, ProviderError> {
        self.call(
            Operation::AssociateRouteTable,
            self.inner
                .associate_route_table(region, route_table_id, subnet_id),
        )
        .await
    }
    async fn disassociate_route_table(
        &self,
        region: &str,
        association_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DisassociateRouteTable,
            self.inner.disassociate_route_table(region, association_id),
        )
        .await
    }
    async fn delete_route_table(
        &self,
        region: &str,
        route_table_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteRouteTable,
            self.inner.delete_route_table(region, route_table_id),
        )
        .await
    }
    async fn create_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
        target: &RouteTarget,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::CreateRoute,
            self.inner
                .create_route(region, route_table_id, destination, target),
        )
        .await
    }
    async fn delete_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteRoute,
            self.inner.delete_route(region, route_table_id, destination),
        )
        .await
    }
    async fn find_instances(
        &self,
        region: &str,
        owner: InstanceOwner,
    ) -> Result<Vec<Instance>, ProviderError> {
        self.call(
            Operation::FindInstances,
            self.inner.find_instances(region, owner),
        )
        .await
    }
    async fn launch_instance(&self, launch: &LaunchRequest) -> Result<Instance, ProviderError> {
        self.call(
            Operation::LaunchInstance,
            self.inner.launch_instance(launch),
        )
        .await
    }
    async fn terminate_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::TerminateInstances,
            self.inner.terminate_instances(region, instance_ids),
        )
        .await
    }
    async fn find_transit_gateway_attachments(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
        let found = self
            .call(
                Operation::FindTransitGatewayAttachments,
                self.inner
                    .find_transit_gateway_attachments(region, network_id),
            )
            .await?;
        Ok(found.into_iter().map(|a| self.held(a)).collect())
    }
    async fn create_transit_gateway_attachment(
        &self,
        region: &str,
        attachment: &TransitGatewaySpec,
        vpc_id: &str,
        subnet_ids: &[String],
    ) -> Result<TransitGatewayAttachment, ProviderError> {
        let created = self
            .call(
                Operation::CreateTransitGatewayAttachment,
                self.inner
                    .create_transit_gateway_attachment(region, attachment, vpc_id, subnet_ids),
            )
            .await?;
        Ok(self.held(created))
    }
    async fn delete_transit_gateway_attachment(
        &self,
        region: &str,
        attachment_id: &str,
    ) -> Result<(), ProviderError> {
        self.call(
            Operation::DeleteTransitGatewayAttachment,
            self.inner
                .delete_transit_gateway_attachment(region, attachment_id),
        )
        .await
    }
}

//! A control plane that dies at any mutating step of network + group + attachment reconcile,
//! before or after the provider performed the call, leaves nothing duplicated or orphaned:
//! a fresh reconcile (the restarted control plane) converges to exactly the expected
//! resources, counted by describing tagged resources and everything else in the region.

use fleetgate_provisioner::state::DataplaneGroupState;
use fleetgate_provisioner::CrashTiming;

use crate::support::{region_totals, Env, Membership, RegionTotals, Scenario, ScenarioStates};

/// Mutating steps of a clean run from nothing: VPC, 3 subnets, security group, 2 ports,
/// internet gateway + attach, route table + 3 associations + default route, 3 instances,
/// the attachment, 2 routes.
const STEPS: u64 = 20;

#[tokio::test]
async fn a_clean_run_has_the_expected_mutating_steps_and_then_none() {
    let env = Env::start().await;
    let tgw = env.customer_transit_gateway().await;
    let membership = Membership::default();
    let scenario = Scenario::new("10.40.0.0/16", &tgw);
    let (counter, ctx) = env.faulty();
    let states = scenario
        .reconcile(&ctx, &membership)
        .await
        .expect("clean run");
    assert_eq!(states, ScenarioStates::launched());
    assert_eq!(counter.mutating_calls(), STEPS);
    let states = scenario
        .reconcile(&ctx, &membership)
        .await
        .expect("second run");
    assert_eq!(states, ScenarioStates::all_ready());
    assert_eq!(counter.mutating_calls(), STEPS, "nothing to change");
    assert_eq!(scenario.census(&env.ec2).await, Scenario::expected_census());
}

// Every step k in 1..=STEPS, crashing before and after the call; split in four so the
// halves run side by side (each on its own moto).

#[tokio::test]
async fn a_crash_before_the_network_steps_then_a_restart_leaves_no_duplicates_or_orphans() {
    crash_at_steps(1..=10, CrashTiming::BeforeCall).await;
}

#[tokio::test]
async fn a_crash_before_the_node_and_attachment_steps_then_a_restart_leaves_no_duplicates_or_orphans(
) {
    crash_at_steps(11..=STEPS, CrashTiming::BeforeCall).await;
}

#[tokio::test]
async fn a_crash_after_the_network_steps_then_a_restart_leaves_no_duplicates_or_orphans() {
    crash_at_steps(1..=10, CrashTiming::AfterCall).await;
}

#[tokio::test]
async fn a_crash_after_the_node_and_attachment_steps_then_a_restart_leaves_no_duplicates_or_orphans(
) {
    crash_at_steps(11..=STEPS, CrashTiming::AfterCall).await;
}

async fn crash_at_steps(steps: std::ops::RangeInclusive<u64>, timing: CrashTiming) {
    let env = Env::start().await;
    let membership = Membership::default();
    // A reset region always has the same default furniture.
    let base = region_totals(&env.ec2).await;
    for k in steps {
        env.reset().await;
        let tgw = env.customer_transit_gateway().await;
        let scenario = Scenario::new("10.41.0.0/16", &tgw);
        let (faulty, dying) = env.faulty();
        faulty.crash_at_mutating_step(k, timing);
        let crashed = scenario.reconcile(&dying, &membership).await;
        assert!(
            matches!(&crashed, Err(e) if e.is_crash()),
            "step {k} ({timing}): expected the injected crash, got {crashed:?}"
        );
        assert!(faulty.has_crashed());

        // The restarted control plane: one pass creates what is missing (nodes launched before
        // the crash may already be running); the next one changes nothing.
        let (after_restart, ctx) = env.faulty();
        let restarted = scenario
            .reconcile(&ctx, &membership)
            .await
            .unwrap_or_else(|e| panic!("step {k} ({timing}): restart pass failed: {e}"));
        assert!(
            restarted == ScenarioStates::launched() || restarted == ScenarioStates::all_ready(),
            "step {k} ({timing}): {restarted:?}"
        );
        let converged_at = after_restart.mutating_calls();
        let settled = scenario
            .reconcile(&ctx, &membership)
            .await
            .unwrap_or_else(|e| panic!("step {k} ({timing}): second pass failed: {e}"));
        assert_eq!(settled, ScenarioStates::all_ready(), "step {k} ({timing})");
        assert_eq!(
            after_restart.mutating_calls(),
            converged_at,
            "step {k} ({timing}): the first pass after the restart converged"
        );
        assert_eq!(
            scenario.census(&env.ec2).await,
            Scenario::expected_census(),
            "step {k} ({timing}): tagged resources after restart"
        );
        assert_eq!(
            region_totals(&env.ec2).await,
            RegionTotals {
                vpcs: base.vpcs + 1,
                subnets: base.subnets + 3,
                live_instances: base.live_instances + 3,
                attachments: base.attachments + 1,
                internet_gateways: base.internet_gateways + 1,
            },
            "step {k} ({timing}): no untagged or stray resources anywhere in the region"
        );
        // Nodes launched before the crash were kept, not relaunched: the group is ready on the
        // first pass after the restart exactly when all three had been launched (steps 15-17).
        let all_launched = k > 17 || (k == 17 && timing == CrashTiming::AfterCall);
        let expected_group = if all_launched {
            DataplaneGroupState::Ready
        } else {
            DataplaneGroupState::Initializing
        };
        assert_eq!(restarted.group, expected_group, "step {k} ({timing})");
    }
}

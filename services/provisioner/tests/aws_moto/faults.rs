//! Throttling and 5xx: the reconcilers back off (visible in the logs), converge, and a lost
//! answer never turns into a duplicate; attempts are bounded; a permanent refusal becomes the
//! `error` state with the provider's reason.

use fleetgate_provisioner::reconcile::reconcile_network;
use fleetgate_provisioner::state::NetworkState;
use fleetgate_provisioner::{Fault, Operation, ProviderError, ReconcileError};

use crate::support::{network_spec, Env, LogCapture, Membership, Scenario, ScenarioStates};

#[tokio::test]
async fn throttling_and_server_errors_back_off_in_the_logs_and_converge_without_duplicates() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let env = Env::start().await;
    let tgw = env.customer_transit_gateway().await;
    let scenario = Scenario::new("10.50.0.0/16", &tgw);
    let (faulty, ctx) = env.faulty();
    // Every 4th call throttled, whatever it is; on top, creates whose work is done but whose
    // answer is a 5xx (the worst case for creates without a client token).
    faulty.fail_every_nth(None, 4, Fault::Throttle);
    faulty.fail_next_after_call(Some(Operation::CreateVpc), 1, Fault::ServerError);
    faulty.fail_next_after_call(Some(Operation::CreateSubnet), 2, Fault::ServerError);
    faulty.fail_next_after_call(
        Some(Operation::CreateTransitGatewayAttachment),
        1,
        Fault::ServerError,
    );
    faulty.fail_next(Some(Operation::CreateRoute), 2, Fault::ServerError);

    let membership = Membership::default();
    let states = scenario
        .reconcile(&ctx, &membership)
        .await
        .expect("converges despite the faults");
    assert_eq!(states, ScenarioStates::launched());
    let states = scenario
        .reconcile(&ctx, &membership)
        .await
        .expect("second pass despite the faults");
    assert_eq!(states, ScenarioStates::all_ready());
    assert_eq!(scenario.census(&env.ec2).await, Scenario::expected_census());
    assert!(
        faulty.injected_faults() >= 10,
        "{} faults",
        faulty.injected_faults()
    );

    let text = logs.text();
    let backoffs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("backing off before retrying"))
        .collect();
    assert!(
        backoffs.len() as u64 >= faulty.injected_faults(),
        "one warn line per injected fault, got {} for {}:\n{text}",
        backoffs.len(),
        faulty.injected_faults()
    );
    assert!(backoffs.iter().all(|l| l.contains("WARN")
        && l.contains("attempt=")
        && l.contains("delay_ms=")
        && l.contains("step=")));
    assert!(backoffs.iter().any(|l| l.contains("RequestLimitExceeded")));
    assert!(backoffs.iter().any(|l| l.contains("HTTP 503")));
}

#[tokio::test]
async fn attempts_are_bounded_and_the_pass_fails_with_the_last_error() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let env = Env::start().await;
    let network = network_spec("10.51.0.0/16");
    let (faulty, ctx) = env.faulty();
    faulty.fail_next(Some(Operation::FindVpcs), 100, Fault::Throttle);
    let err = reconcile_network(&ctx, &network)
        .await
        .expect_err("throttled for good");
    assert!(
        matches!(
            err,
            ReconcileError::Provider(ProviderError::Throttled { .. })
        ),
        "{err}"
    );
    assert_eq!(
        faulty.calls(Operation::FindVpcs),
        6,
        "RetryPolicy::fast: 6 attempts"
    );
    let text = logs.text();
    for attempt in 1..=5 {
        assert!(
            text.contains(&format!("attempt={attempt} ")),
            "attempt {attempt} logged:\n{text}"
        );
    }
    assert!(
        !text.contains("attempt=6 "),
        "the last attempt is not followed by a backoff"
    );
}

#[tokio::test]
async fn a_permanent_refusal_is_the_error_state_with_the_providers_reason() {
    let env = Env::start().await;
    let network = network_spec("10.52.0.0/16");
    let (faulty, ctx) = env.faulty();
    faulty.fail_next(
        Some(Operation::CreateVpc),
        1,
        Fault::Reject("VpcLimitExceeded".into()),
    );
    let report = reconcile_network(&ctx, &network).await.expect("a report");
    assert_eq!(report.state, NetworkState::Error);
    assert!(
        report
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("VpcLimitExceeded")),
        "{report:?}"
    );
    assert_eq!(faulty.calls(Operation::CreateVpc), 1, "not retried");
    // Once the user has done something about it, the next pass converges.
    let fixed = reconcile_network(&ctx, &network).await.expect("next pass");
    assert_eq!(fixed.state, NetworkState::Ready);
}

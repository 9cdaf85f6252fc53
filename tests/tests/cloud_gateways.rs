//! Dedicated cloud gateways on AWS end to end (issue 6): a real `fleetgate serve
//! --cloud-provider aws` against a private moto, driven only through the REST API and checked
//! both through the API and with EC2 describe calls straight on moto.
//!
//! Gateway nodes on moto never boot, so the control plane runs with a one-hour connect deadline
//! (otherwise it would replace them) and the checks stop at what EC2 shows.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_ec2::Client;
use fleetgate_e2e::ec2::{
    instances_tagged, is_live, live_instances_tagged, route_tables_tagged, subnets_tagged,
    tag_value, user_data, vpcs_tagged,
};
use fleetgate_e2e::{eventually, http, ControlPlaneProcess, Moto, MOTO_REGION};
use fleetgate_provisioner::tags;
use reqwest::Method;
use serde_json::{json, Value};

/// Patience with each reconcile step (a pass every second, woken at once by API changes; the
/// machine may be busy with other tests).
const WAIT: Duration = Duration::from_secs(60);
/// An AMI moto knows.
const AMI: &str = "ami-03cf127a";
/// moto's account id.
const AWS_ACCOUNT: &str = "123456789012";
const ZONES: [&str; 2] = ["us-east-1a", "us-east-1b"];
const NETWORKS: &str = "/v2/cloud-gateways/networks";
const CONFIGURATIONS: &str = "/v2/cloud-gateways/configurations";

/// moto, a control plane provisioning on it, and an EC2 client that checks what it did.
struct Env {
    cp: ControlPlaneProcess,
    ec2: Client,
    moto: Moto,
}

impl Env {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let cp = ControlPlaneProcess::start_with_env(
            &[
                "--cloud-provider",
                "aws",
                "--aws-ami-id",
                AMI,
                "--cloud-reconcile-interval",
                "1s",
                "--gateway-node-connect-deadline",
                "1h",
            ],
            moto.aws_env(),
        )
        .await;
        let ec2 = moto.ec2().await;
        Self { cp, ec2, moto }
    }

    /// A panic message tail with both processes' logs.
    fn logs(&self) -> String {
        format!(
            "\n--- control plane log ---\n{}\n--- moto log (tail) ---\n{}",
            self.cp.log(),
            tail(&self.moto.log(), 40)
        )
    }

    /// An AWS provider account and a network in it (us-east-1, two zones, 10.10.0.0/16),
    /// waited for until the API says `ready`; returns the network as the API shows it.
    async fn ready_network(&self) -> Value {
        // Registering the AWS account is an operator's job.
        let (status, account) = self
            .cp
            .call_as(
                &self.cp.operator_token,
                Method::POST,
                "/v2/cloud-gateways/provider-accounts",
                Some(json!({"provider": "aws", "provider_account_id": AWS_ACCOUNT})),
            )
            .await;
        assert_eq!(status, 201, "register the AWS account: {account}");
        let network = self
            .cp
            .ok(
                Method::POST,
                NETWORKS,
                Some(json!({
                    "name": "prod-us-east-1",
                    "region": MOTO_REGION,
                    "availability_zones": ZONES,
                    "cidr_block": "10.10.0.0/16",
                    "cloud_gateway_provider_account_id": account["id"],
                })),
            )
            .await;
        let id = network["id"].as_str().unwrap().to_string();
        self.wait_for_state(&format!("{NETWORKS}/{id}"), "ready")
            .await
    }

    /// Polls a resource until its `state` is `want`; returns the resource. A resource in state
    /// `error` fails at once with its reason.
    async fn wait_for_state(&self, path: &str, want: &str) -> Value {
        let what = format!("{path} to be {want}");
        let found = eventually(WAIT, &what, || async {
            let (status, body) = self.cp.call(Method::GET, path, None).await;
            if status != 200 {
                return Some(Err(format!("GET {path} answered {status}: {body}")));
            }
            // Konnect's enums have no `error`: a failed attempt shows reported_status ERROR.
            if body["state_metadata"]["reported_status"] == "ERROR" || body["state"] == "error" {
                return Some(Err(format!("{path} failed: {body}")));
            }
            match body["state"].as_str() {
                Some(state) if state == want => Some(Ok(body)),
                _ => None,
            }
        })
        .await;
        found.unwrap_or_else(|e| panic!("{e}{}", self.logs()))
    }

    /// Polls until `GET path` answers 404.
    async fn wait_until_gone(&self, path: &str) {
        eventually(WAIT, &format!("{path} to be gone from the API"), || async {
            let (status, _) = self.cp.call(Method::GET, path, None).await;
            (status == 404).then_some(())
        })
        .await;
    }

    /// Deletes the network and waits until it is gone from the API and its VPC and subnets
    /// from EC2. A deleted configuration disappears from the API at once while its groups
    /// still terminate, and the network stays in use (409) until they are gone: the delete is
    /// retried through that window.
    async fn delete_network_and_check_cleanup(&self, network: &Value) {
        let id = network["id"].as_str().unwrap();
        let vpc_id = network["provider_metadata"]["vpc_id"].as_str().unwrap();
        let path = format!("{NETWORKS}/{id}");
        eventually(WAIT, "the network delete to be accepted", || async {
            let (status, body) = self.cp.call(Method::DELETE, &path, None).await;
            match status {
                204 => Some(()),
                409 => None,
                _ => panic!("delete network answered {status}: {body}"),
            }
        })
        .await;
        self.wait_until_gone(&path).await;
        let ec2 = &self.ec2;
        eventually(WAIT, "the network's VPC and subnets to be gone", || async {
            let vpcs = vpcs_tagged(ec2, tags::NETWORK_ID, id).await;
            let subnets = subnets_tagged(ec2, tags::NETWORK_ID, id).await;
            let by_id = ec2
                .describe_vpcs()
                .filters(filter("vpc-id", vpc_id))
                .send()
                .await
                .expect("describe vpcs by id");
            (vpcs.is_empty() && subnets.is_empty() && by_id.vpcs().is_empty()).then_some(())
        })
        .await;
        println!("network {id}: deleted; VPC {vpc_id} and its subnets are gone from EC2");
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

fn set<I, S>(items: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{value} is not an array"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Step 1: the API's `ready` network has a VPC and a subnet per zone, and EC2 shows exactly
/// those, tagged with the Fleetgate network id.
async fn check_network_in_ec2(env: &Env, network: &Value) {
    let id = network["id"].as_str().unwrap();
    let vpc_id = network["provider_metadata"]["vpc_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a ready network has a vpc_id: {network}"));
    let subnet_ids = strings(&network["provider_metadata"]["subnet_ids"]);
    assert_eq!(
        subnet_ids.len(),
        ZONES.len(),
        "one subnet per zone: {network}"
    );

    let vpcs = vpcs_tagged(&env.ec2, tags::NETWORK_ID, id).await;
    assert_eq!(vpcs.len(), 1, "one VPC tagged with network {id}: {vpcs:?}");
    assert_eq!(vpcs[0].vpc_id(), Some(vpc_id));
    assert_eq!(vpcs[0].cidr_block(), Some("10.10.0.0/16"));
    let subnets = subnets_tagged(&env.ec2, tags::NETWORK_ID, id).await;
    assert_eq!(
        set(subnets.iter().filter_map(|s| s.subnet_id())),
        set(subnet_ids.clone()),
        "EC2's subnets tagged with network {id} are the API's"
    );
    assert!(subnets.iter().all(|s| s.vpc_id() == Some(vpc_id)));
    assert_eq!(
        set(subnets.iter().filter_map(|s| s.availability_zone())),
        set(ZONES),
        "a subnet in each zone"
    );
    println!("step 1: network {id} ready: VPC {vpc_id}, subnets {subnet_ids:?}, tagged in EC2");
}

/// PUTs the control plane's configuration: one AWS group of `instances` nodes in `network`.
async fn put_configuration(env: &Env, control_plane: &str, network: &str, instances: u32) -> Value {
    env.cp
        .ok(
            Method::PUT,
            CONFIGURATIONS,
            Some(json!({
                "control_plane_id": control_plane,
                "control_plane_geo": "us",
                "dataplane_groups": [{
                    "provider": "aws",
                    "region": MOTO_REGION,
                    "cloud_gateway_network_id": network,
                    "autoscale": {
                        "kind": "static",
                        "instance_type": "small",
                        "requested_instances": instances,
                    },
                }],
            })),
        )
        .await
}

/// Waits until the configuration's only group shows `nodes` private IPs and host names;
/// returns the group.
async fn wait_for_group_nodes(env: &Env, configuration: &str, nodes: usize) -> Value {
    let path = format!("{CONFIGURATIONS}/{configuration}");
    eventually(
        WAIT,
        &format!("the configuration's group to show {nodes} nodes"),
        || async {
            let body = env.cp.ok(Method::GET, &path, None).await;
            let groups = body["dataplane_groups"].as_array()?.clone();
            let [group] = groups.as_slice() else {
                return None;
            };
            assert_ne!(
                group["state_metadata"]["reported_status"], "ERROR",
                "group failed: {group}"
            );
            let ips = group["private_ip_addresses"].as_array()?.len();
            let hostnames = group["hostnames"].as_array()?.len();
            (ips == nodes && hostnames == nodes).then(|| group.clone())
        },
    )
    .await
}

/// Steps 1–4 and 7: network, a 3-node group, scale to 1, a refused network delete, then the
/// cleanup path (configuration, then network).
#[tokio::test]
async fn a_configuration_launches_scales_and_cleans_up_gateway_nodes_on_aws() {
    let env = Env::start().await;
    let network = env.ready_network().await;
    check_network_in_ec2(&env, &network).await;
    let network_id = network["id"].as_str().unwrap();
    let subnet_ids = set(strings(&network["provider_metadata"]["subnet_ids"]));

    // Step 2: three nodes.
    let control_plane = env
        .cp
        .create_control_plane("prod", "pinned_client_certs")
        .await;
    let configuration = put_configuration(&env, &control_plane, network_id, 3).await;
    let configuration_id = configuration["id"].as_str().unwrap().to_string();
    let group = wait_for_group_nodes(&env, &configuration_id, 3).await;
    let live = live_instances_tagged(&env.ec2, tags::CONFIGURATION_ID, &configuration_id).await;
    assert_eq!(live.len(), 3, "three live instances in EC2: {live:?}");
    let private_ips = set(live.iter().filter_map(|i| i.private_ip_address()));
    assert_eq!(
        private_ips,
        set(strings(&group["private_ip_addresses"])),
        "API IPs are EC2's"
    );
    for instance in &live {
        assert_eq!(
            tag_value(instance.tags(), tags::NETWORK_ID),
            Some(network_id)
        );
        assert_eq!(
            tag_value(instance.tags(), tags::CONTROL_PLANE_ID),
            Some(control_plane.as_str())
        );
        assert!(subnet_ids.contains(instance.subnet_id().unwrap_or_default()));
        assert_eq!(instance.image_id(), Some(AMI));
    }
    let first = live[0].instance_id().unwrap();
    let script = user_data(&env.ec2, first).await;
    assert!(
        script.contains("cluster_join_token"),
        "user data carries a join token: {script}"
    );
    assert!(
        !script.contains("PRIVATE KEY"),
        "user data carries no private key: {script}"
    );
    println!(
        "step 2: configuration {configuration_id}: 3 live instances {:?}, API group {} \
         with IPs {} and host names {}; user data of {first} has cluster_join_token and no \
         private key",
        live.iter()
            .filter_map(|i| i.instance_id())
            .collect::<Vec<_>>(),
        group["state"],
        group["private_ip_addresses"],
        group["hostnames"],
    );

    // Step 3: down to one node; exactly two of the three are terminated.
    let launched = set(live.iter().filter_map(|i| i.instance_id()));
    let replaced = put_configuration(&env, &control_plane, network_id, 1).await;
    assert_eq!(
        replaced["id"], configuration["id"],
        "PUT keeps the configuration"
    );
    let group = wait_for_group_nodes(&env, &configuration_id, 1).await;
    let ec2 = &env.ec2;
    let (kept, stopped) = eventually(WAIT, "two of the three instances to stop", || async {
        let all = instances_tagged(ec2, tags::CONFIGURATION_ID, &configuration_id).await;
        let (live, stopped): (Vec<_>, Vec<_>) = all.into_iter().partition(is_live);
        (stopped.len() == 2).then_some((live, stopped))
    })
    .await;
    assert_eq!(kept.len(), 1, "one instance left: {kept:?}");
    let stopped_ids = set(stopped.iter().filter_map(|i| i.instance_id()));
    let kept_id = kept[0].instance_id().unwrap();
    assert!(launched.contains(kept_id), "no new instance was launched");
    assert!(stopped_ids.is_subset(&launched));
    assert_eq!(
        strings(&group["private_ip_addresses"]),
        vec![kept[0].private_ip_address().unwrap().to_string()]
    );
    println!(
        "step 3: requested_instances 1: kept {kept_id}, terminated {stopped_ids:?}; API shows \
         one node {}",
        group["private_ip_addresses"]
    );

    // Step 4: the network cannot go while the configuration uses it.
    let answer = http()
        .delete(format!("http://{}{NETWORKS}/{network_id}", env.cp.api))
        .bearer_auth(&env.cp.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    let problem: Value = answer.json().await.unwrap();
    assert!(
        problem.to_string().contains(&configuration_id),
        "the 409 names configuration {configuration_id}: {problem}"
    );
    println!("step 4: DELETE network while in use: 409 {problem}");

    // Step 7: the cleanup path. Configuration first: every node terminates and it disappears.
    let (status, body) = env
        .cp
        .call(
            Method::DELETE,
            &format!("{CONFIGURATIONS}/{configuration_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204, "delete configuration: {body}");
    eventually(
        WAIT,
        "every instance of the configuration to stop",
        || async {
            let all = instances_tagged(ec2, tags::CONFIGURATION_ID, &configuration_id).await;
            (!all.is_empty() && !all.iter().any(is_live)).then_some(())
        },
    )
    .await;
    env.wait_until_gone(&format!("{CONFIGURATIONS}/{configuration_id}"))
        .await;
    println!("step 7: configuration deleted: all 3 instances terminated, gone from the API");
    env.delete_network_and_check_cleanup(&network).await;
}

/// Destinations routed through `tgw` in the network's route table(s), read from EC2; also
/// how many tables the network has.
async fn routes_via(ec2: &Client, network_id: &str, tgw: &str) -> (usize, BTreeSet<String>) {
    let tables = route_tables_tagged(ec2, tags::NETWORK_ID, network_id).await;
    let routes = tables
        .iter()
        .flat_map(|t| t.routes())
        .filter(|r| r.transit_gateway_id() == Some(tgw))
        .filter_map(|r| r.destination_cidr_block().map(str::to_string))
        .collect();
    (tables.len(), routes)
}

/// The attachments of `tgw` that are not deleted.
async fn live_attachments(
    ec2: &Client,
    tgw: &str,
) -> Vec<aws_sdk_ec2::types::TransitGatewayVpcAttachment> {
    ec2.describe_transit_gateway_vpc_attachments()
        .send()
        .await
        .expect("describe transit gateway attachments")
        .transit_gateway_vpc_attachments()
        .iter()
        .filter(|a| a.transit_gateway_id() == Some(tgw))
        .filter(|a| a.state().map(|s| s.as_str()) != Some("deleted"))
        .cloned()
        .collect()
}

/// Steps 5 and 6: attach the network to a customer's transit gateway, routes follow the
/// CIDRs, an overlapping second attachment is refused naming the first, delete removes the
/// attachment and its routes; then the network goes.
#[tokio::test]
async fn a_transit_gateway_attachment_routes_its_cidrs_and_refuses_overlaps_on_aws() {
    let env = Env::start().await;
    let network = env.ready_network().await;
    check_network_in_ec2(&env, &network).await;
    let network_id = network["id"].as_str().unwrap();
    let vpc_id = network["provider_metadata"]["vpc_id"].as_str().unwrap();
    let subnet_ids = set(strings(&network["provider_metadata"]["subnet_ids"]));

    // The customer's transit gateway (moto has no RAM sharing: same account).
    let created = env
        .ec2
        .create_transit_gateway()
        .description("customer tgw")
        .send()
        .await
        .expect("create the customer's transit gateway");
    let tgw = created
        .transit_gateway()
        .and_then(|t| t.transit_gateway_id())
        .unwrap()
        .to_string();
    let collection = format!("{NETWORKS}/{network_id}/transit-gateways");
    let attachment_body = |name: &str, cidrs: &[&str]| {
        json!({
            "name": name,
            "cidr_blocks": cidrs,
            "transit_gateway_attachment_config": {
                "kind": "aws-transit-gateway-attachment",
                "transit_gateway_id": tgw,
                "ram_share_arn": format!("arn:aws:ram:{MOTO_REGION}:{AWS_ACCOUNT}:resource-share/customer"),
            },
        })
    };

    // Step 5: attach; the attachment sits on the network's VPC and subnets, with a route per
    // CIDR through the transit gateway.
    let attachment = env
        .cp
        .ok(
            Method::POST,
            &collection,
            Some(attachment_body(
                "customer-prod",
                &["172.16.0.0/16", "192.168.0.0/20"],
            )),
        )
        .await;
    let attachment_id = attachment["id"].as_str().unwrap().to_string();
    let item = format!("{collection}/{attachment_id}");
    let ready = env.wait_for_state(&item, "ready").await;
    let attachments = live_attachments(&env.ec2, &tgw).await;
    assert_eq!(attachments.len(), 1, "one attachment: {attachments:?}");
    let ec2_attachment = &attachments[0];
    assert_eq!(ec2_attachment.vpc_id(), Some(vpc_id));
    assert_eq!(set(ec2_attachment.subnet_ids().to_vec()), subnet_ids);
    let (tables, routes) = routes_via(&env.ec2, network_id, &tgw).await;
    assert!(tables >= 1, "the network has a route table");
    assert_eq!(routes, set(["172.16.0.0/16", "192.168.0.0/20"]));
    assert_eq!(
        ready["transit_gateway_attachment_config"]["transit_gateway_id"],
        tgw
    );
    println!(
        "step 5: attachment {attachment_id} ready: {} on {vpc_id} subnets {subnet_ids:?}; \
         routes via {tgw}: {routes:?}",
        ec2_attachment
            .transit_gateway_attachment_id()
            .unwrap_or_default()
    );

    // The CIDRs change: the routes follow.
    env.cp
        .ok(
            Method::PATCH,
            &item,
            Some(json!({"cidr_blocks": ["172.16.0.0/16", "10.200.0.0/16"]})),
        )
        .await;
    let ec2 = &env.ec2;
    let want = set(["172.16.0.0/16", "10.200.0.0/16"]);
    eventually(WAIT, "the routes to follow the new CIDRs", || async {
        let (_, routes) = routes_via(ec2, network_id, &tgw).await;
        (routes == want).then_some(())
    })
    .await;
    let patched = env.wait_for_state(&item, "ready").await;
    assert_eq!(
        set(strings(&patched["cidr_blocks"])),
        want,
        "the API shows the new CIDRs"
    );
    println!("step 5: PATCH cidr_blocks: routes via {tgw} now {want:?} (192.168.0.0/20 gone)");

    // Step 6: a second attachment overlapping the first is refused, naming it.
    let (status, problem) = env
        .cp
        .call(
            Method::POST,
            &collection,
            Some(attachment_body("customer-staging", &["172.16.128.0/17"])),
        )
        .await;
    assert!(
        [400, 409, 422].contains(&status),
        "an overlapping attachment is refused: {status} {problem}"
    );
    let text = problem.to_string();
    assert!(
        text.contains("customer-prod") || text.contains(&attachment_id),
        "the refusal names the conflicting attachment: {problem}"
    );
    let listed = env.cp.ok(Method::GET, &collection, None).await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(1),
        "nothing stored"
    );
    println!("step 6: overlapping attachment refused: {status} {problem}");

    // Step 5, end: delete; attachment and routes go, and so does the row.
    let (status, body) = env.cp.call(Method::DELETE, &item, None).await;
    assert_eq!(status, 204, "delete attachment: {body}");
    env.wait_until_gone(&item).await;
    eventually(WAIT, "the attachment and its routes to be gone", || async {
        let (_, routes) = routes_via(ec2, network_id, &tgw).await;
        let attachments = live_attachments(ec2, &tgw).await;
        (routes.is_empty() && attachments.is_empty()).then_some(())
    })
    .await;
    let listed = env.cp.ok(Method::GET, &collection, None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0));
    println!("step 5: attachment deleted: gone from EC2 (or state deleted), no routes via {tgw}, gone from the API");

    env.delete_network_and_check_cleanup(&network).await;
}

//! Cloud-gateway API (provider accounts, networks, transit gateways, configurations): CRUD,
//! validation naming the field, CIDR rules, in-use conflicts, organisation isolation and
//! read-only viewers. The reconciler-facing store functions are in cloud_gateways_store.rs.

mod support;

use fleetgate_control_plane::store::Role;
use serde_json::{json, Value};
use support::TestApp;

const ACCOUNTS: &str = "/v2/cloud-gateways/provider-accounts";
const NETWORKS: &str = "/v2/cloud-gateways/networks";
const CONFIGURATIONS: &str = "/v2/cloud-gateways/configurations";

/// Registers an AWS account for the organisation (an operator's job) and returns its id.
async fn aws_account(app: &TestApp, org: &str, account: &str) -> String {
    let operator = app.token(org, Role::Operator).await;
    app.post(
        ACCOUNTS,
        &operator,
        json!({"provider": "aws", "provider_account_id": account}),
    )
    .await
    .expect(201)
    .id()
}

fn network_body(account: &str, name: &str, cidr: &str) -> Value {
    json!({
        "name": name,
        "region": "us-east-1",
        "availability_zones": ["us-east-1a", "us-east-1b"],
        "cidr_block": cidr,
        "cloud_gateway_provider_account_id": account,
    })
}

/// The organisation's `local` account (listed without registering it).
async fn local_account(app: &TestApp, token: &str) -> String {
    let listed = app
        .get(&format!("{ACCOUNTS}?filter[provider]=local"), token)
        .await
        .expect(200);
    listed.body["data"][0]["id"]
        .as_str()
        .expect("the local account")
        .to_string()
}

async fn network(app: &TestApp, token: &str, account: &str, name: &str, cidr: &str) -> String {
    app.post(NETWORKS, token, network_body(account, name, cidr))
        .await
        .expect(201)
        .id()
}

fn tgw_body(name: &str, cidrs: &[&str]) -> Value {
    json!({
        "name": name,
        "cidr_blocks": cidrs,
        "transit_gateway_attachment_config": {
            "kind": "aws-transit-gateway-attachment",
            "transit_gateway_id": "tgw-0123456789abcdef0",
            "ram_share_arn": "arn:aws:ram:us-east-1:111122223333:resource-share/abc",
        },
    })
}

fn group(network: &str, region: &str, instances: i64) -> Value {
    json!({
        "provider": "aws",
        "region": region,
        "cloud_gateway_network_id": network,
        "autoscale": {"kind": "static", "instance_type": "small", "requested_instances": instances},
    })
}

/// A PUT body for a control plane with these groups.
fn configuration(cp: &str, groups: Value) -> Value {
    json!({"control_plane_id": cp, "control_plane_geo": "us", "dataplane_groups": groups})
}

#[tokio::test]
async fn provider_accounts_are_registered_listed_and_deleted_when_unused() {
    let app = TestApp::start().await;
    let admin = app.token("org", Role::Admin).await;
    // Registering and deleting accounts is an operator's job; admins read.
    app.post(
        ACCOUNTS,
        &admin,
        json!({"provider": "aws", "provider_account_id": "111122223333"}),
    )
    .await
    .expect(403);
    let t = app.token("org", Role::Operator).await;
    let created = app
        .post(
            ACCOUNTS,
            &t,
            json!({"provider": "aws", "provider_account_id": "111122223333"}),
        )
        .await
        .expect(201);
    assert_eq!(created.body["provider"], "aws");
    assert_eq!(created.body["provider_account_id"], "111122223333");
    let aws = created.id();
    let shown = app
        .get(&format!("{ACCOUNTS}/{aws}"), &admin)
        .await
        .expect(200);
    assert_eq!(shown.body, created.body);
    // Every organisation has the local account; registering it again conflicts.
    let local_id = local_account(&app, &admin).await;
    let local = app
        .get(&format!("{ACCOUNTS}/{local_id}"), &admin)
        .await
        .expect(200);
    assert_eq!(local.body["provider_account_id"], "local");
    app.post(ACCOUNTS, &t, json!({"provider": "local"}))
        .await
        .expect(409);

    let dup = app
        .post(
            ACCOUNTS,
            &t,
            json!({"provider": "aws", "provider_account_id": "111122223333"}),
        )
        .await
        .expect(409);
    assert_eq!(dup.invalid_fields(), vec!["provider_account_id"]);
    for (body, field) in [
        (json!({}), "provider"),
        (json!({"provider": "gcp"}), "provider"),
        (json!({"provider": "aws"}), "provider_account_id"),
        (
            json!({"provider": "aws", "provider_account_id": "12345"}),
            "provider_account_id",
        ),
        (
            json!({"provider": "local", "provider_account_id": "111122223333"}),
            "provider_account_id",
        ),
        (json!({"provider": "aws", "extra": 1}), "extra"),
    ] {
        let reply = app.post(ACCOUNTS, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
    }
    let listed = app.get(ACCOUNTS, &admin).await.expect(200);
    assert_eq!(listed.body["data"].as_array().expect("data").len(), 2);
    assert_eq!(listed.body["meta"]["page"]["total"], 2);
    let aws_only = app
        .get(&format!("{ACCOUNTS}?filter[provider][eq]=aws"), &admin)
        .await
        .expect(200);
    assert_eq!(aws_only.body["data"][0]["id"], aws.as_str());
    assert_eq!(aws_only.body["meta"]["page"]["total"], 1);

    let net = network(&app, &t, &aws, "edge", "10.0.0.0/16").await;
    let in_use = app
        .delete(&format!("{ACCOUNTS}/{aws}"), &t)
        .await
        .expect(409);
    assert!(in_use.text.contains("\\\"edge\\\""), "{}", in_use.text);
    assert!(!net.is_empty());
    app.delete(&format!("{ACCOUNTS}/{local_id}"), &admin)
        .await
        .expect(403);
    app.delete(&format!("{ACCOUNTS}/{local_id}"), &t)
        .await
        .expect(204);
    app.get(&format!("{ACCOUNTS}/{local_id}"), &t)
        .await
        .expect(404);
}

#[tokio::test]
async fn networks_are_created_renamed_and_deleted_with_field_errors() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let aws = aws_account(&app, "org", "111122223333").await;
    let created = app
        .post(NETWORKS, &t, network_body(&aws, " edge ", "10.10.0.0/16"))
        .await
        .expect(201);
    let b = &created.body;
    assert_eq!(b["name"], "edge");
    assert_eq!(b["region"], "us-east-1");
    assert_eq!(b["availability_zones"], json!(["us-east-1a", "us-east-1b"]));
    assert_eq!(b["cidr_block"], "10.10.0.0/16");
    assert_eq!(b["cloud_gateway_provider_account_id"], aws.as_str());
    assert_eq!(b["state"], "created");
    assert_eq!(b["default"], false);
    assert_eq!(b["entity_version"], 1);
    assert_eq!(b["configuration_reference_count"], 0);
    assert!(b["created_at"].as_str().expect("RFC 3339").ends_with('Z'));
    assert_eq!(
        b["state_metadata"],
        json!({"reported_status": null, "reason": null})
    );
    assert_eq!(
        b["provider_metadata"],
        json!({"vpc_id": null, "subnet_ids": []})
    );
    assert_eq!(b["transit_gateway_count"], 0);
    let id = created.id();
    let path = format!("{NETWORKS}/{id}");

    let mut local = network_body(&aws, "x", "10.0.0.0/16");
    local["cloud_gateway_provider_account_id"] = json!(local_account(&app, &t).await);
    let cases = [
        (
            network_body(&aws, "n", "8.8.0.0/16"),
            "cidr_block",
            "private",
        ),
        (network_body(&aws, "n", "10.0.0.0/24"), "cidr_block", "/16"),
        (network_body(&aws, "n", "10.0.0.0/15"), "cidr_block", "/16"),
        (
            network_body(&aws, "n", "10.0.0.1/16"),
            "cidr_block",
            "host bits",
        ),
        (
            network_body(&aws, "n", "nonsense"),
            "cidr_block",
            "IPv4 CIDR",
        ),
        (
            network_body(&uuid::Uuid::new_v4().to_string(), "n", "10.0.0.0/16"),
            "cloud_gateway_provider_account_id",
            "does not exist",
        ),
        (
            network_body("not-an-id", "n", "10.0.0.0/16"),
            "cloud_gateway_provider_account_id",
            "UUID",
        ),
        (local, "region", "local"),
        (
            {
                let mut b = network_body(&aws, "n", "10.0.0.0/16");
                b["region"] = json!("mars-north-1");
                b
            },
            "region",
            "us-east-1",
        ),
        (network_body(&aws, " ", "10.0.0.0/16"), "name", "blank"),
    ];
    for (body, field, words) in cases {
        let reply = app.post(NETWORKS, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
        assert!(reply.text.contains(words), "{body}: {}", reply.text);
    }
    let mut zones = network_body(&aws, "n", "10.0.0.0/16");
    zones["availability_zones"] = json!(["us-east-1a", "us-east-1a"]);
    let reply = app.post(NETWORKS, &t, zones.clone()).await.expect(400);
    assert_eq!(reply.invalid_fields(), vec!["availability_zones[1]"]);
    zones["availability_zones"] = json!(["eu-west-1a"]);
    let reply = app.post(NETWORKS, &t, zones.clone()).await.expect(400);
    assert_eq!(reply.invalid_fields(), vec!["availability_zones[0]"]);
    zones["availability_zones"] = json!([]);
    let reply = app.post(NETWORKS, &t, zones.clone()).await.expect(400);
    assert_eq!(reply.invalid_fields(), vec!["availability_zones"]);
    zones.as_object_mut().expect("object").remove("region");
    let reply = app.post(NETWORKS, &t, zones).await.expect(400);
    assert_eq!(reply.invalid_fields(), vec!["region"]);
    let dup = app
        .post(NETWORKS, &t, network_body(&aws, "edge", "10.20.0.0/16"))
        .await
        .expect(409);
    assert_eq!(dup.invalid_fields(), vec!["name"]);

    let renamed = app
        .patch(&path, &t, json!({"name": "edge-2"}))
        .await
        .expect(200);
    assert_eq!(renamed.body["name"], "edge-2");
    assert_eq!(renamed.body["cidr_block"], "10.10.0.0/16");
    assert_eq!(renamed.body["entity_version"], 2);
    for (body, field) in [
        (json!({"cidr_block": "10.11.0.0/16"}), "cidr_block"),
        (json!({"name": "y", "region": "eu-west-1"}), "region"),
        (json!({"colour": "red"}), "colour"),
        (json!({"name": ""}), "name"),
    ] {
        let reply = app.patch(&path, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
    }
    let reply = app
        .patch(&path, &t, json!({"cidr_block": "10.11.0.0/16"}))
        .await
        .expect(400);
    assert!(reply.text.contains("cannot be changed"), "{}", reply.text);

    // A second page exists once there are more networks than the page size.
    network(&app, &t, &aws, "second", "10.30.0.0/16").await;
    let page = app
        .get(&format!("{NETWORKS}?page[size]=1"), &t)
        .await
        .expect(200);
    assert_eq!(page.body["data"].as_array().expect("data").len(), 1);
    assert_eq!(
        page.body["meta"]["page"],
        json!({"number": 1, "size": 1, "total": 2})
    );
    let named = app
        .get(&format!("{NETWORKS}?filter[name][contains]=sec"), &t)
        .await
        .expect(200);
    assert_eq!(named.body["meta"]["page"]["total"], 1);
    assert_eq!(named.body["data"][0]["name"], "second");
    let created_only = app
        .get(&format!("{NETWORKS}?filter[state]=created"), &t)
        .await
        .expect(200);
    assert_eq!(created_only.body["meta"]["page"]["total"], 2);
    for (query, param) in [
        ("filter[name][like]=x", "filter[name][like]"),
        ("filter[colour]=red", "filter[colour]"),
        ("filter[state]=broken", "filter[state]"),
        ("page[after]=x", "page[after]"),
    ] {
        let reply = app
            .get(&format!("{NETWORKS}?{query}"), &t)
            .await
            .expect(400);
        assert_eq!(reply.invalid_fields(), vec![param], "{}", reply.text);
    }

    app.delete(&path, &t).await.expect(204);
    let shown = app.get(&path, &t).await.expect(200);
    assert_eq!(shown.body["state"], "terminating");
    // Deleting again is a no-op; renaming still works while it goes away.
    app.delete(&path, &t).await.expect(204);
    app.get("/v2/cloud-gateways/networks/not-a-uuid", &t)
        .await
        .expect(404);
}

#[tokio::test]
async fn transit_gateways_follow_the_cidr_rules_and_only_cidrs_change() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let aws = aws_account(&app, "org", "111122223333").await;
    let net = network(&app, &t, &aws, "edge", "10.0.0.0/16").await;
    let tgws = format!("{NETWORKS}/{net}/transit-gateways");
    let created = app
        .post(
            &tgws,
            &t,
            json!({
                "name": "corp",
                "cidr_blocks": ["192.168.0.0/20"],
                "dns_config": [{"remote_dns_server_ip_addresses": ["192.168.0.2"],
                                "domain_proxy_list": ["corp.example"]}],
                "transit_gateway_attachment_config": tgw_body("x", &[])["transit_gateway_attachment_config"],
            }),
        )
        .await
        .expect(201);
    let b = &created.body;
    assert_eq!(b["name"], "corp");
    assert_eq!(b["cidr_blocks"], json!(["192.168.0.0/20"]));
    assert_eq!(b["state"], "created");
    assert_eq!(b["entity_version"], 1);
    assert!(b["updated_at"].as_str().expect("RFC 3339").ends_with('Z'));
    assert_eq!(
        b["transit_gateway_attachment_config"]["kind"],
        "aws-transit-gateway-attachment"
    );
    assert_eq!(
        b["transit_gateway_attachment_config"]["transit_gateway_id"],
        "tgw-0123456789abcdef0"
    );
    assert_eq!(
        b["dns_config"][0]["domain_proxy_list"],
        json!(["corp.example"])
    );
    let corp = created.id();
    let corp_path = format!("{tgws}/{corp}");
    assert_eq!(
        app.get(&format!("{NETWORKS}/{net}"), &t)
            .await
            .expect(200)
            .body["transit_gateway_count"],
        1
    );

    // Overlap with another attachment names it.
    let overlap = app
        .post(&tgws, &t, tgw_body("lab", &["192.168.8.0/24"]))
        .await
        .expect(400);
    assert_eq!(overlap.invalid_fields(), vec!["cidr_blocks[0]"]);
    assert!(overlap.text.contains("corp"), "{}", overlap.text);
    for (body, field, words) in [
        (
            tgw_body("lab", &["10.0.4.0/24"]),
            "cidr_blocks[0]",
            "network",
        ),
        (
            tgw_body("lab", &["8.8.8.0/24"]),
            "cidr_blocks[0]",
            "private",
        ),
        (tgw_body("lab", &[]), "cidr_blocks", "at least one"),
        (
            tgw_body("lab", &["172.16.0.0/16", "172.16.1.0/24"]),
            "cidr_blocks[1]",
            "cidr_blocks[0]",
        ),
    ] {
        let reply = app.post(&tgws, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
        assert!(reply.text.contains(words), "{body}: {}", reply.text);
    }
    let mut bad = tgw_body("lab", &["172.16.0.0/16"]);
    bad["transit_gateway_attachment_config"]["kind"] = json!("vpc-peering");
    bad["transit_gateway_attachment_config"]["transit_gateway_id"] = json!("vpc-1");
    let reply = app.post(&tgws, &t, bad).await.expect(400);
    assert_eq!(
        reply.invalid_fields(),
        vec![
            "transit_gateway_attachment_config.kind",
            "transit_gateway_attachment_config.transit_gateway_id"
        ]
    );
    let dup = app
        .post(&tgws, &t, tgw_body("corp", &["172.16.0.0/16"]))
        .await
        .expect(409);
    assert_eq!(dup.invalid_fields(), vec!["name"]);
    let lab = app
        .post(&tgws, &t, tgw_body("lab", &["172.16.0.0/16"]))
        .await
        .expect(201)
        .id();

    // Only cidr_blocks may change; an update does not conflict with itself.
    let patched = app
        .patch(
            &corp_path,
            &t,
            json!({"cidr_blocks": ["192.168.0.0/20", "192.168.64.0/20"]}),
        )
        .await
        .expect(200);
    assert_eq!(
        patched.body["cidr_blocks"],
        json!(["192.168.0.0/20", "192.168.64.0/20"])
    );
    let conflict = app
        .patch(&corp_path, &t, json!({"cidr_blocks": ["172.16.4.0/24"]}))
        .await
        .expect(400);
    assert!(conflict.text.contains("lab"), "{}", conflict.text);
    for (body, field) in [
        (json!({"name": "renamed"}), "name"),
        (
            json!({"cidr_blocks": ["192.168.0.0/20"], "transit_gateway_attachment_config": {}}),
            "transit_gateway_attachment_config",
        ),
        (json!({"dns_config": []}), "dns_config"),
    ] {
        let reply = app.patch(&corp_path, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
    }

    // A network with attachments cannot be deleted.
    let busy = app
        .delete(&format!("{NETWORKS}/{net}"), &t)
        .await
        .expect(409);
    assert!(busy.text.contains("corp"), "{}", busy.text);
    app.delete(&format!("{tgws}/{lab}"), &t).await.expect(204);
    let lab_shown = app.get(&format!("{tgws}/{lab}"), &t).await.expect(200);
    assert_eq!(lab_shown.body["state"], "terminating");
    let listed = app.get(&tgws, &t).await.expect(200);
    assert_eq!(listed.body["data"].as_array().expect("data").len(), 2);
    assert_eq!(listed.body["meta"]["page"]["total"], 2);
    let terminating = app
        .get(&format!("{tgws}?filter[state][eq]=terminating"), &t)
        .await
        .expect(200);
    assert_eq!(terminating.body["data"][0]["name"], "lab");
    assert_eq!(terminating.body["meta"]["page"]["total"], 1);
    // A terminating attachment cannot change.
    app.patch(
        &format!("{tgws}/{lab}"),
        &t,
        json!({"cidr_blocks": ["172.17.0.0/16"]}),
    )
    .await
    .expect(409);

    // The local provider has no transit gateways.
    let local = local_account(&app, &t).await;
    let mut body = network_body(&local, "laptop", "10.1.0.0/16");
    body["region"] = json!("local");
    body["availability_zones"] = json!(["local-a"]);
    let local_net = app.post(NETWORKS, &t, body).await.expect(201).id();
    let refused = app
        .post(
            &format!("{NETWORKS}/{local_net}/transit-gateways"),
            &t,
            tgw_body("corp", &["192.168.0.0/20"]),
        )
        .await
        .expect(422);
    assert_eq!(
        refused.body["detail"],
        "transit gateways are not supported by the local provider"
    );
}

#[tokio::test]
async fn configurations_hold_the_whole_desired_state() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let other = app.token("other", Role::Admin).await;
    let aws = aws_account(&app, "org", "111122223333").await;
    let east = network(&app, &t, &aws, "east", "10.0.0.0/16").await;
    let mut west_body = network_body(&aws, "west", "10.1.0.0/16");
    west_body["region"] = json!("us-west-2");
    west_body["availability_zones"] = json!(["us-west-2a"]);
    let west = app.post(NETWORKS, &t, west_body).await.expect(201).id();
    let (cp, _) = app.control_plane(&t, "prod").await;

    let created = app
        .put(
            CONFIGURATIONS,
            &t,
            configuration(&cp, json!([group(&east, "us-east-1", 3)])),
        )
        .await
        .expect(200);
    let b = &created.body;
    assert_eq!(b["control_plane_id"], cp.as_str());
    assert_eq!(b["control_plane_geo"], "us");
    assert_eq!(b["entity_version"], 1);
    assert_eq!(b["kind"], "dedicated.v0");
    assert_eq!(b["api_access"], "private+public");
    assert!(b["version"].is_string());
    assert_eq!(
        b["dataplane_group_config"]
            .as_array()
            .expect("config")
            .len(),
        1
    );
    let groups = b["dataplane_groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["state"], "created");
    assert_eq!(groups[0]["cloud_gateway_network_id"], east.as_str());
    assert_eq!(groups[0]["autoscale"]["requested_instances"], 3);
    assert_eq!(groups[0]["private_ip_addresses"], json!([]));
    assert_eq!(groups[0]["egress_ip_addresses"], json!([]));
    assert_eq!(groups[0]["hostnames"], json!([]));
    let config = created.id();
    let east_group = groups[0]["id"].clone();

    // Field-level errors.
    let other_org_net = {
        let acc = aws_account(&app, "other", "444455556666").await;
        network(&app, &other, &acc, "theirs", "10.0.0.0/16").await
    };
    let cases = [
        (
            configuration(&cp, json!([group(&east, "us-west-2", 1)])),
            "dataplane_groups[0].region",
        ),
        (
            configuration(&cp, json!([group(&east, "us-east-1", 21)])),
            "dataplane_groups[0].autoscale.requested_instances",
        ),
        (
            configuration(&cp, json!([group(&east, "us-east-1", -1)])),
            "dataplane_groups[0].autoscale.requested_instances",
        ),
        (
            configuration(&cp, json!([group(&other_org_net, "us-east-1", 1)])),
            "dataplane_groups[0].cloud_gateway_network_id",
        ),
        (
            configuration(
                &cp,
                json!([group(&east, "us-east-1", 1), group(&east, "us-east-1", 2)]),
            ),
            "dataplane_groups[1].cloud_gateway_network_id",
        ),
        (
            configuration(&uuid::Uuid::new_v4().to_string(), json!([])),
            "control_plane_id",
        ),
        (
            json!({"control_plane_geo": "us", "dataplane_groups": []}),
            "control_plane_id",
        ),
        (
            json!({"control_plane_id": cp, "control_plane_geo": "us"}),
            "dataplane_groups",
        ),
        (
            json!({"control_plane_id": cp, "dataplane_groups": []}),
            "control_plane_geo",
        ),
        (
            json!({"control_plane_id": cp, "control_plane_geo": "mars", "dataplane_groups": []}),
            "control_plane_geo",
        ),
        (
            json!({"control_plane_id": cp, "control_plane_geo": "us", "version": "3.9",
                   "dataplane_groups": []}),
            "version",
        ),
        (
            json!({"control_plane_id": cp, "control_plane_geo": "us", "api_access": "vpn",
                   "dataplane_groups": []}),
            "api_access",
        ),
    ];
    for (body, field) in cases {
        let reply = app.put(CONFIGURATIONS, &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body}: {}",
            reply.text
        );
    }
    let mut blank = group(&east, "us-east-1", 1);
    blank["autoscale"]["instance_type"] = json!("t3.small");
    blank["environment"] = json!([{"name": "PATH", "value": "/bin"}]);
    let reply = app
        .put(CONFIGURATIONS, &t, configuration(&cp, json!([blank])))
        .await
        .expect(400);
    assert_eq!(
        reply.invalid_fields(),
        vec![
            "dataplane_groups[0].autoscale.instance_type",
            "dataplane_groups[0].environment[0].name"
        ]
    );

    // PUT again replaces: the kept network keeps its group, a new one gets a new group.
    let replaced = app
        .put(
            CONFIGURATIONS,
            &t,
            configuration(
                &cp,
                json!([group(&east, "us-east-1", 1), group(&west, "us-west-2", 2)]),
            ),
        )
        .await
        .expect(200);
    assert_eq!(replaced.id(), config);
    assert_eq!(replaced.body["entity_version"], 2);
    let groups = replaced.body["dataplane_groups"]
        .as_array()
        .expect("groups");
    assert_eq!(groups.len(), 2);
    let kept = groups
        .iter()
        .find(|g| g["region"] == "us-east-1")
        .expect("the east group");
    assert_eq!(kept["id"], east_group);
    assert_eq!(kept["autoscale"]["requested_instances"], 1);
    assert!(groups.iter().any(|g| g["region"] == "us-west-2"));

    // A network in use by a group cannot be deleted; the message names the configuration.
    let busy = app
        .delete(&format!("{NETWORKS}/{east}"), &t)
        .await
        .expect(409);
    assert!(busy.text.contains(&config), "{}", busy.text);
    // Nor can the control plane while its nodes exist.
    app.delete(&format!("/v2/control-planes/{cp}"), &t)
        .await
        .expect(409);

    // Dropping a group makes it terminate; its network stays in use until it is gone.
    let dropped = app
        .put(
            CONFIGURATIONS,
            &t,
            configuration(&cp, json!([group(&west, "us-west-2", 2)])),
        )
        .await
        .expect(200);
    let mut states: Vec<(&str, &str)> = dropped.body["dataplane_groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["region"].as_str().expect("region"),
                g["state"].as_str().expect("state"),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![("us-east-1", "terminating"), ("us-west-2", "created")]
    );
    app.delete(&format!("{NETWORKS}/{east}"), &t)
        .await
        .expect(409);

    let listed = app.get(CONFIGURATIONS, &t).await.expect(200);
    assert_eq!(listed.body["data"].as_array().expect("data").len(), 1);
    app.get(&format!("{CONFIGURATIONS}/{config}"), &t)
        .await
        .expect(200);
    app.delete(&format!("{CONFIGURATIONS}/{config}"), &t)
        .await
        .expect(204);
    // It shows its groups terminating until their nodes are gone; deleting again is a no-op.
    let deleting = app
        .get(&format!("{CONFIGURATIONS}/{config}"), &t)
        .await
        .expect(200);
    assert_eq!(deleting.body["dataplane_group_config"], json!([]));
    assert!(deleting.body["dataplane_groups"]
        .as_array()
        .expect("groups")
        .iter()
        .all(|g| g["state"] == "terminating"));
    app.delete(&format!("{CONFIGURATIONS}/{config}"), &t)
        .await
        .expect(204);
    let listed = app
        .get(
            &format!("{CONFIGURATIONS}?filter[control_plane_id]={cp}"),
            &t,
        )
        .await
        .expect(200);
    assert_eq!(listed.body["meta"]["page"]["total"], 1);
    // Its groups still terminate, so the networks are still in use.
    app.delete(&format!("{NETWORKS}/{west}"), &t)
        .await
        .expect(409);
    // A network that is going away cannot take a new group.
    let spare = network(&app, &t, &aws, "spare", "10.2.0.0/16").await;
    app.delete(&format!("{NETWORKS}/{spare}"), &t)
        .await
        .expect(204);
    let reply = app
        .put(
            CONFIGURATIONS,
            &t,
            configuration(&cp, json!([group(&spare, "us-east-1", 1)])),
        )
        .await
        .expect(400);
    assert!(reply.text.contains("terminating"), "{}", reply.text);
}

#[tokio::test]
async fn other_organizations_get_404_and_viewers_only_read() {
    let app = TestApp::start().await;
    let a = app.token("org-a", Role::Admin).await;
    let b = app.token("org-b", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let aws = aws_account(&app, "org-a", "111122223333").await;
    let net = network(&app, &a, &aws, "edge", "10.0.0.0/16").await;
    let tgw = app
        .post(
            &format!("{NETWORKS}/{net}/transit-gateways"),
            &a,
            tgw_body("corp", &["192.168.0.0/20"]),
        )
        .await
        .expect(201)
        .id();
    let (cp, _) = app.control_plane(&a, "prod").await;
    let config = app
        .put(
            CONFIGURATIONS,
            &a,
            configuration(&cp, json!([group(&net, "us-east-1", 1)])),
        )
        .await
        .expect(200)
        .id();
    let items: Vec<(String, Option<Value>)> = vec![
        (format!("{ACCOUNTS}/{aws}"), None),
        (format!("{NETWORKS}/{net}"), Some(json!({"name": "x"}))),
        (
            format!("{NETWORKS}/{net}/transit-gateways/{tgw}"),
            Some(json!({"cidr_blocks": ["192.168.16.0/20"]})),
        ),
        (format!("{CONFIGURATIONS}/{config}"), None),
    ];
    for (path, patch) in &items {
        app.get(path, &b).await.expect(404);
        app.delete(path, &b).await.expect(404);
        app.get(path, &viewer).await.expect(200);
        app.delete(path, &viewer).await.expect(403);
        if let Some(body) = patch {
            app.patch(path, &b, body.clone()).await.expect(404);
            app.patch(path, &viewer, body.clone()).await.expect(403);
        }
    }
    for list in [
        ACCOUNTS.to_string(),
        NETWORKS.to_string(),
        CONFIGURATIONS.to_string(),
    ] {
        // Both organisations see their own local account besides.
        let own = usize::from(list == ACCOUNTS);
        let listed = app.get(&list, &b).await.expect(200);
        assert_eq!(
            listed.body["data"].as_array().expect("data").len(),
            own,
            "{list}"
        );
        let listed = app.get(&list, &viewer).await.expect(200);
        assert_eq!(listed.body["data"].as_array().expect("data").len(), 1 + own);
    }
    app.get(&format!("{NETWORKS}/{net}/transit-gateways"), &b)
        .await
        .expect(404);
    app.post(
        &format!("{NETWORKS}/{net}/transit-gateways"),
        &b,
        tgw_body("x", &["172.16.0.0/16"]),
    )
    .await
    .expect(404);
    // Org B cannot point its configuration at org A's control plane.
    let reply = app
        .put(CONFIGURATIONS, &b, configuration(&cp, json!([])))
        .await
        .expect(400);
    assert_eq!(reply.invalid_fields(), vec!["control_plane_id"]);

    app.post(ACCOUNTS, &viewer, json!({"provider": "local"}))
        .await
        .expect(403);
    app.post(NETWORKS, &viewer, network_body(&aws, "v", "10.9.0.0/16"))
        .await
        .expect(403);
    app.post(
        &format!("{NETWORKS}/{net}/transit-gateways"),
        &viewer,
        tgw_body("v", &["172.16.0.0/16"]),
    )
    .await
    .expect(403);
    app.put(CONFIGURATIONS, &viewer, configuration(&cp, json!([])))
        .await
        .expect(403);
    // Nothing changed.
    let shown = app
        .get(&format!("{CONFIGURATIONS}/{config}"), &a)
        .await
        .expect(200);
    assert_eq!(shown.body["entity_version"], 1);
    app.call(reqwest::Method::GET, NETWORKS, None, None)
        .await
        .expect(401);
}

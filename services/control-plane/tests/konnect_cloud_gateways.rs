//! Contract: Konnect's cloud-gateways v2 reference. Sends the reference's example request
//! bodies (written out by hand, with ids and region/zone values this control plane offers)
//! and checks status codes, wrappers, field names and JSON types of the answers.

mod support;

use fleetgate_control_plane::store::Role;
use serde_json::{json, Value};
use support::TestApp;

const BASE: &str = "/v2/cloud-gateways";

fn assert_rfc3339(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    assert!(
        text.len() >= 20 && text.as_bytes()[10] == b'T' && text.ends_with('Z'),
        "{what}: {text}"
    );
}

fn assert_numbered_page(body: &Value) {
    assert!(body["data"].is_array(), "{body}");
    let page = &body["meta"]["page"];
    for key in ["number", "size", "total"] {
        assert!(page[key].is_u64(), "meta.page.{key}: {body}");
    }
}

#[tokio::test]
async fn availability_document_needs_no_token_and_lists_what_the_api_accepts() {
    let app = TestApp::start().await;
    let reply = app
        .call(
            reqwest::Method::GET,
            &format!("{BASE}/availability.json"),
            None,
            None,
        )
        .await
        .expect(200);
    let doc = &reply.body;
    assert!(doc["versions"].as_array().expect("versions")[0].is_string());
    let sizes: Vec<&str> = doc["instance_types"]
        .as_array()
        .expect("instance_types")
        .iter()
        .map(|t| {
            for key in ["hourly_cost", "v_cpu", "gb_memory"] {
                assert!(t[key].is_string(), "{key}: {t}");
            }
            assert!(t["capacity_rps"].is_u64(), "{t}");
            t["name"].as_str().expect("name")
        })
        .collect();
    assert_eq!(sizes, vec!["small", "medium", "large"]);
    let providers = doc["providers"].as_array().expect("providers");
    let aws = providers
        .iter()
        .find(|p| p["provider"] == "aws")
        .expect("aws");
    let region = &aws["regions"][0];
    for key in ["availability_zones", "cidr_blocks", "reserved_cidr_blocks"] {
        assert!(region[key].is_array(), "{key}: {region}");
    }
    assert!(region["name"].is_string() && region["region"].is_string());
    assert!(providers.iter().any(|p| p["provider"] == "local"));
    assert_eq!(doc["serverless_v1_providers"], json!([]));
}

#[tokio::test]
async fn networks_configurations_and_transit_gateways_answer_in_konnects_shapes() {
    let app = TestApp::start().await;
    let operator = app.token("org", Role::Operator).await;
    let t = app.token("org", Role::Admin).await;

    // Provider accounts: numbered list, RFC 3339 timestamps.
    let account = app
        .post(
            &format!("{BASE}/provider-accounts"),
            &operator,
            json!({"provider": "aws", "provider_account_id": "929112345678"}),
        )
        .await
        .expect(201);
    let accounts = app
        .get(&format!("{BASE}/provider-accounts"), &t)
        .await
        .expect(200);
    assert_numbered_page(&accounts.body);
    for a in accounts.body["data"].as_array().expect("data") {
        for key in ["id", "provider", "provider_account_id"] {
            assert!(a[key].is_string(), "{key}: {a}");
        }
        assert_rfc3339(&a["created_at"], "created_at");
        assert_rfc3339(&a["updated_at"], "updated_at");
    }

    // CreateNetworkRequest, the reference's example (zones named as availability.json does).
    let network = app
        .post(
            &format!("{BASE}/networks"),
            &t,
            json!({
                "name": "us-east-2 network",
                "cloud_gateway_provider_account_id": account.id(),
                "region": "us-east-2",
                "availability_zones": ["us-east-2a", "us-east-2b", "us-east-2c"],
                "cidr_block": "10.0.0.0/16",
                "state": "initializing"
            }),
        )
        .await
        .expect(201);
    let n = &network.body;
    for key in [
        "id",
        "name",
        "cloud_gateway_provider_account_id",
        "region",
        "cidr_block",
        "state",
    ] {
        assert!(n[key].is_string(), "{key}: {n}");
    }
    assert!(n["default"].is_boolean());
    assert!(n["availability_zones"].is_array());
    assert!(n["provider_metadata"]["subnet_ids"].is_array());
    for key in [
        "transit_gateway_count",
        "configuration_reference_count",
        "entity_version",
    ] {
        assert!(n[key].is_u64(), "{key}: {n}");
    }
    assert!(n["state_metadata"].is_object());
    assert_rfc3339(&n["created_at"], "created_at");
    assert_rfc3339(&n["updated_at"], "updated_at");
    let network_id = network.id();
    let patched = app
        .patch(
            &format!("{BASE}/networks/{network_id}"),
            &t,
            json!({"name": "us-east-2 network (renamed)"}),
        )
        .await
        .expect(200);
    assert_eq!(patched.body["entity_version"], 2);
    let listed = app
        .get(
            &format!("{BASE}/networks?filter[name][eq]=us-east-2 network (renamed)&filter[state][neq]=terminated&page[size]=10&page[number]=1"),
            &t,
        )
        .await
        .expect(200);
    assert_numbered_page(&listed.body);
    assert_eq!(
        listed.body["meta"]["page"],
        json!({"number": 1, "size": 10, "total": 1})
    );

    // CreateTransitGatewayRequest (AWS), the reference's example.
    let tgw = app
        .post(
            &format!("{BASE}/networks/{network_id}/transit-gateways"),
            &t,
            json!({
                "name": "us-east-2 transit gateway",
                "cidr_blocks": ["192.168.0.0/16"],
                "dns_config": [{
                    "remote_dns_server_ip_addresses": ["192.168.0.2"],
                    "domain_proxy_list": ["foobar.com"]
                }],
                "transit_gateway_attachment_config": {
                    "kind": "aws-transit-gateway-attachment",
                    "transit_gateway_id": "tgw-0123456789abcdef0",
                    "ram_share_arn": "arn:aws:ram:us-east-2:123456789012:resource-share/abc"
                }
            }),
        )
        .await
        .expect(201);
    let g = &tgw.body;
    assert_eq!(
        g["dns_config"][0]["domain_proxy_list"],
        json!(["foobar.com"])
    );
    assert!(g["entity_version"].is_u64());
    assert_rfc3339(&g["created_at"], "created_at");
    let tgws = app
        .get(
            &format!("{BASE}/networks/{network_id}/transit-gateways"),
            &t,
        )
        .await
        .expect(200);
    assert_numbered_page(&tgws.body);

    // CreateConfigurationRequest, the reference's example (version from availability.json).
    let (cp, _) = app.control_plane(&t, "prod").await;
    let version = app
        .get(&format!("{BASE}/availability.json"), &t)
        .await
        .expect(200)
        .body["versions"][0]
        .clone();
    let manifest = app
        .put(
            &format!("{BASE}/configurations"),
            &t,
            json!({
                "control_plane_id": cp,
                "control_plane_geo": "us",
                "version": version,
                "api_access": "private+public",
                "dataplane_groups": [{
                    "provider": "aws",
                    "region": "us-east-2",
                    "cloud_gateway_network_id": network_id,
                    "autoscale": {"kind": "static", "instance_type": "small", "requested_instances": 2},
                    "environment": [{"name": "KONG_LOG_LEVEL", "value": "info"}]
                }]
            }),
        )
        .await
        .expect(200);
    let m = &manifest.body;
    for key in [
        "id",
        "version",
        "api_access",
        "kind",
        "control_plane_id",
        "control_plane_geo",
    ] {
        assert!(m[key].is_string(), "{key}: {m}");
    }
    assert!(m["entity_version"].is_u64());
    assert_rfc3339(&m["created_at"], "created_at");
    assert_rfc3339(&m["updated_at"], "updated_at");
    let config = &m["dataplane_group_config"][0];
    assert_eq!(
        config["autoscale"],
        json!({"kind": "static", "instance_type": "small", "requested_instances": 2})
    );
    assert_eq!(
        config["environment"],
        json!([{"name": "KONG_LOG_LEVEL", "value": "info"}])
    );
    let group = &m["dataplane_groups"][0];
    for key in [
        "id",
        "provider",
        "region",
        "cloud_gateway_network_id",
        "state",
    ] {
        assert!(group[key].is_string(), "{key}: {group}");
    }
    assert!(group["private_ip_addresses"].is_array());
    assert!(group["egress_ip_addresses"].is_array());
    assert!(group["state_metadata"].is_object());
    assert_rfc3339(&group["created_at"], "created_at");

    // Autopilot: max_rps defaults to ten times base_rps.
    let autopilot = app
        .put(
            &format!("{BASE}/configurations"),
            &t,
            json!({
                "control_plane_id": cp,
                "control_plane_geo": "us",
                "dataplane_groups": [{
                    "provider": "aws",
                    "region": "us-east-2",
                    "cloud_gateway_network_id": network_id,
                    "autoscale": {"kind": "autopilot", "base_rps": 100}
                }]
            }),
        )
        .await
        .expect(200);
    assert_eq!(
        autopilot.body["dataplane_groups"][0]["autoscale"],
        json!({"kind": "autopilot", "base_rps": 100, "max_rps": 1000})
    );
    assert_eq!(autopilot.body["entity_version"], 2);

    let configurations = app
        .get(
            &format!("{BASE}/configurations?filter[control_plane_id][eq]={cp}&filter[control_plane_geo]=us"),
            &t,
        )
        .await
        .expect(200);
    assert_numbered_page(&configurations.body);
    assert_eq!(configurations.body["meta"]["page"]["total"], 1);
    let nodes = app
        .get(&format!("{BASE}/nodes?filter[region]=us-east-2"), &t)
        .await
        .expect(200);
    assert_numbered_page(&nodes.body);

    // Bad input: 400 problem+json naming the field or the query parameter.
    let bad = app
        .put(
            &format!("{BASE}/configurations"),
            &t,
            json!({
                "control_plane_id": cp,
                "control_plane_geo": "us",
                "dataplane_groups": [{
                    "provider": "aws",
                    "region": "us-east-2",
                    "cloud_gateway_network_id": network_id,
                    "autoscale": {"kind": "static", "instance_type": "huge", "requested_instances": 1}
                }]
            }),
        )
        .await
        .expect(400);
    assert_eq!(
        bad.invalid_fields(),
        vec!["dataplane_groups[0].autoscale.instance_type"]
    );
    assert_eq!(bad.body["invalid_parameters"][0]["source"], "body");
    let bad_query = app
        .get(
            &format!("{BASE}/configurations?filter[control_plane_id][contains]=x"),
            &t,
        )
        .await
        .expect(400);
    assert_eq!(
        bad_query.body["invalid_parameters"][0]["field"],
        "filter[control_plane_id][contains]"
    );
    assert_eq!(bad_query.body["invalid_parameters"][0]["source"], "query");
}

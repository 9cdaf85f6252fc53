//! Billing usage against hand-computed timelines: the store's clock is pinned before every
//! write, so each service and portal lifetime starts and ends at a known second.

mod support;

use fleetgate_control_plane::billing::Period;
use fleetgate_control_plane::store::Role;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestApp;

/// Unix seconds of `YYYY-MM` day `day` at `hh:mm:ss` UTC.
fn at(month: &str, day: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    Period::parse(month).expect("test month").start()
        + (day - 1) * 86_400
        + hh * 3600
        + mm * 60
        + ss
}

async fn usage(app: &TestApp, token: &str, query: &str) -> Value {
    app.get(&format!("/v2/billing/usage?{query}"), token)
        .await
        .expect(200)
        .body
}

/// The usage entry of one control plane.
fn cp_usage<'a>(usage: &'a Value, cp: &str) -> &'a Value {
    usage["control_planes"]
        .as_array()
        .expect("control_planes")
        .iter()
        .find(|c| c["control_plane_id"] == cp)
        .unwrap_or_else(|| panic!("control plane {cp} missing from {usage}"))
}

struct Timeline<'a> {
    app: &'a TestApp,
    token: String,
}

impl Timeline<'_> {
    async fn create_service(&self, base: &str, name: &str, t: i64) -> String {
        self.app.store.clock().pin(t);
        self.app
            .post(
                &format!("{base}/services"),
                &self.token,
                json!({"name": name, "url": "http://upstream.internal"}),
            )
            .await
            .expect(201)
            .id()
    }

    async fn delete_service(&self, base: &str, id: &str, t: i64) {
        self.app.store.clock().pin(t);
        self.app
            .delete(&format!("{base}/services/{id}"), &self.token)
            .await
            .expect(204);
    }
}

#[tokio::test]
async fn services_count_as_the_peak_of_simultaneous_services() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let tl = Timeline {
        app: &app,
        token: t.clone(),
    };
    let (cp_a, a) = app.control_plane(&t, "a").await;
    let (cp_b, b) = app.control_plane(&t, "b").await;
    let (cp_idle, _) = app.control_plane(&t, "idle").await;

    // A: s1 from February on; s2 across the Feb/Mar boundary; s3 starts the second s2 ends;
    // s4 lives one hour inside March; s5 is created and deleted within one second.
    tl.create_service(&a, "s1", at("2024-02", 20, 0, 0, 0))
        .await;
    let s2 = tl
        .create_service(&a, "s2", at("2024-02", 25, 0, 0, 0))
        .await;
    tl.delete_service(&a, &s2, at("2024-03", 10, 0, 0, 0)).await;
    let s3 = tl
        .create_service(&a, "s3", at("2024-03", 10, 0, 0, 0))
        .await;
    let s4 = tl
        .create_service(&a, "s4", at("2024-03", 15, 12, 0, 0))
        .await;
    let s5 = tl
        .create_service(&a, "s5", at("2024-03", 15, 12, 0, 0))
        .await;
    tl.delete_service(&a, &s5, at("2024-03", 15, 12, 0, 0))
        .await;
    tl.delete_service(&a, &s4, at("2024-03", 15, 13, 0, 0))
        .await;
    tl.delete_service(&a, &s3, at("2024-03", 20, 0, 0, 0)).await;
    // B: three services one second apart, created and kept (PUT creates too).
    tl.create_service(&b, "b1", at("2024-03", 25, 0, 0, 0))
        .await;
    tl.create_service(&b, "b2", at("2024-03", 25, 0, 0, 1))
        .await;
    app.store.clock().pin(at("2024-03", 25, 0, 0, 2));
    app.put(
        &format!("{b}/services/b3"),
        &t,
        json!({"url": "http://upstream.internal"}),
    )
    .await
    .expect(200);
    // Replacing an existing service through PUT or PATCH is not a new service.
    app.store.clock().pin(at("2024-03", 26, 0, 0, 0));
    app.put(
        &format!("{b}/services/b3"),
        &t,
        json!({"url": "http://other.internal"}),
    )
    .await
    .expect(200);
    app.patch(&format!("{b}/services/b1"), &t, json!({"retries": 1}))
        .await
        .expect(200);

    app.store.clock().pin(at("2024-05", 1, 0, 0, 0));
    // February: s1 and s2 from Feb 25.
    let feb = usage(&app, &t, "period=2024-02").await;
    assert_eq!(feb["gateway_services"], 2);
    assert_eq!(feb["gateway_services_peak_at"], at("2024-02", 25, 0, 0, 0));
    assert_eq!(feb["period_start"], at("2024-02", 1, 0, 0, 0));
    assert_eq!(feb["period_end"], at("2024-03", 1, 0, 0, 0));
    assert_eq!(feb["complete"], true);
    assert_eq!(cp_usage(&feb, &cp_b)["gateway_services"], 0);
    assert_eq!(
        cp_usage(&feb, &cp_b)["gateway_services_peak_at"],
        Value::Null
    );

    // March: A peaks at 3 (s1, s3, s4) on the 15th at noon — s5 never coexisted with anything
    // and s2/s3 never overlapped; B peaks at 3 on the 25th. The organisation's peak is 4
    // (s1 + b1..b3 from 00:00:02 on the 25th), not 3 + 3.
    let mar = usage(&app, &t, "period=2024-03").await;
    assert_eq!(cp_usage(&mar, &cp_a)["gateway_services"], 3);
    assert_eq!(
        cp_usage(&mar, &cp_a)["gateway_services_peak_at"],
        at("2024-03", 15, 12, 0, 0)
    );
    assert_eq!(cp_usage(&mar, &cp_a)["control_plane_name"], "a");
    assert_eq!(cp_usage(&mar, &cp_b)["gateway_services"], 3);
    assert_eq!(
        cp_usage(&mar, &cp_b)["gateway_services_peak_at"],
        at("2024-03", 25, 0, 0, 2)
    );
    assert_eq!(cp_usage(&mar, &cp_idle)["gateway_services"], 0);
    assert_eq!(mar["gateway_services"], 4);
    assert_eq!(mar["gateway_services_peak_at"], at("2024-03", 25, 0, 0, 2));
    assert_eq!(mar["period"], "2024-03");

    // April: the four open services existed from the first second.
    let apr = usage(&app, &t, "period=2024-04").await;
    assert_eq!(apr["gateway_services"], 4);
    assert_eq!(apr["gateway_services_peak_at"], at("2024-04", 1, 0, 0, 0));
    assert_eq!(apr["measured_until"], at("2024-05", 1, 0, 0, 0));
    assert_eq!(apr["complete"], true);

    // Asked for, the services counted at the organisation's peak are listed.
    let listed = usage(&app, &t, "period=2024-03&include=peak_services").await;
    let peak_services = listed["peak_services"].as_array().expect("peak_services");
    assert_eq!(peak_services.len(), 4);
    let on_b = peak_services
        .iter()
        .filter(|s| s["control_plane_id"] == cp_b.as_str())
        .count();
    assert_eq!(on_b, 3);
    assert!(peak_services.iter().all(|s| s["deleted_at"].is_null()));
    assert!(mar.get("peak_services").is_none());
    let bad = app
        .get("/v2/billing/usage?period=2024-03&include=everything", &t)
        .await
        .expect(400);
    assert_eq!(bad.invalid_fields(), vec!["include"]);

    // The running month is measured up to now; a month not started yet counts nothing.
    app.store.clock().pin(at("2024-05", 10, 8, 0, 0));
    let may = usage(&app, &t, "period=2024-05").await;
    assert_eq!(may["gateway_services"], 4);
    assert_eq!(may["complete"], false);
    assert_eq!(may["measured_until"], at("2024-05", 10, 8, 0, 1));
    let june = usage(&app, &t, "period=2024-06").await;
    assert_eq!(june["gateway_services"], 0);
    assert_eq!(june["gateway_services_peak_at"], Value::Null);
    assert_eq!(june["active_portals"], 0);
    assert_eq!(june["api_calls"], 0);
    assert_eq!(june["measured_until"], june["period_start"]);
    // January, before anything existed.
    let jan = usage(&app, &t, "period=2024-01").await;
    assert_eq!(jan["gateway_services"], 0);
}

#[tokio::test]
async fn declarative_import_ends_removed_services_and_keeps_the_rest() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let tl = Timeline {
        app: &app,
        token: t.clone(),
    };
    let (cp, base) = app.control_plane(&t, "cp").await;
    let x = tl
        .create_service(&base, "x", at("2024-03", 1, 0, 0, 0))
        .await;
    let y = tl
        .create_service(&base, "y", at("2024-03", 1, 0, 0, 0))
        .await;
    let path = format!("/v2/control-planes/{cp}/declarative-config");
    // Keeps y (same id), drops x, adds z and w (with ids, so a second import keeps them).
    let (z, w) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    app.store.clock().pin(at("2024-03", 5, 0, 0, 0));
    let config = format!(
        "_format_version: \"3.0\"\nservices:\n\
         - id: {y}\n  name: y\n  url: http://y.internal\n\
         - id: {z}\n  name: z\n  url: http://z.internal\n\
         - id: {w}\n  name: w\n  url: http://w.internal\n"
    );
    app.raw(Method::PUT, &path, &t, "application/yaml", config.clone())
        .await
        .expect(200);
    app.get(&format!("{base}/services/{x}"), &t)
        .await
        .expect(404);
    // The same import again ends and starts nothing.
    app.store.clock().pin(at("2024-03", 6, 0, 0, 0));
    app.raw(Method::PUT, &path, &t, "application/yaml", config)
        .await
        .expect(200);
    // Each kept service has one unbroken lifetime, from its creation.
    let pool = sqlx::AnyPool::connect(&app.database_url)
        .await
        .expect("connect to the test database");
    for (id, created) in [
        (y.clone(), at("2024-03", 1, 0, 0, 0)),
        (z.to_string(), at("2024-03", 5, 0, 0, 0)),
        (w.to_string(), at("2024-03", 5, 0, 0, 0)),
    ] {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT created_at, deleted_at FROM service_lifetimes WHERE service_id = $1",
        )
        .bind(&id)
        .fetch_all(&pool)
        .await
        .expect("read service lifetimes");
        assert_eq!(rows, vec![(created, None)], "service {id}");
    }
    pool.close().await;
    // An empty config ends them all.
    app.store.clock().pin(at("2024-03", 7, 0, 0, 0));
    app.raw(
        Method::PUT,
        &path,
        &t,
        "application/yaml",
        "_format_version: \"3.0\"\n",
    )
    .await
    .expect(200);

    app.store.clock().pin(at("2024-04", 2, 0, 0, 0));
    let mar = usage(&app, &t, "period=2024-03").await;
    // x and y until the 5th (2), then y, z, w (3) — never x, y, z, w together, and y never
    // twice.
    assert_eq!(mar["gateway_services"], 3);
    assert_eq!(mar["gateway_services_peak_at"], at("2024-03", 5, 0, 0, 0));
    assert_eq!(cp_usage(&mar, &cp)["gateway_services"], 3);
    let apr = usage(&app, &t, "period=2024-04").await;
    assert_eq!(apr["gateway_services"], 0);
}

#[tokio::test]
async fn deleting_a_control_plane_ends_its_services_but_not_its_history() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let tl = Timeline {
        app: &app,
        token: t.clone(),
    };
    let (cp, base) = app.control_plane(&t, "doomed").await;
    tl.create_service(&base, "one", at("2024-03", 1, 0, 0, 0))
        .await;
    tl.create_service(&base, "two", at("2024-03", 2, 0, 0, 0))
        .await;
    app.store.clock().pin(at("2024-03", 10, 0, 0, 0));
    app.delete(&format!("/v2/control-planes/{cp}"), &t)
        .await
        .expect(204);
    // A new control plane's services after the deletion do not overlap the old ones.
    let (_, other) = app.control_plane(&t, "other").await;
    tl.create_service(&other, "three", at("2024-03", 10, 0, 0, 0))
        .await;

    app.store.clock().pin(at("2024-04", 15, 0, 0, 0));
    let mar = usage(&app, &t, "period=2024-03").await;
    assert_eq!(mar["gateway_services"], 2);
    assert_eq!(mar["gateway_services_peak_at"], at("2024-03", 2, 0, 0, 0));
    let doomed = cp_usage(&mar, &cp);
    assert_eq!(doomed["gateway_services"], 2);
    assert_eq!(doomed["control_plane_name"], Value::Null);
    // In April the deleted control plane had nothing and is not listed.
    let apr = usage(&app, &t, "period=2024-04").await;
    assert_eq!(apr["gateway_services"], 1);
    assert!(apr["control_planes"]
        .as_array()
        .expect("control_planes")
        .iter()
        .all(|c| c["control_plane_id"] != cp.as_str()));
}

#[tokio::test]
async fn active_portals_are_the_peak_of_simultaneously_published_portals() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let portal = |name: &str, published: bool, t_: i64| {
        let app = &app;
        let t = t.clone();
        let name = name.to_string();
        async move {
            app.store.clock().pin(t_);
            app.post(
                "/v2/portals",
                &t,
                json!({"name": name, "published": published}),
            )
            .await
            .expect(201)
            .id()
        }
    };
    let set = |id: String, body: Value, t_: i64| {
        let app = &app;
        let t = t.clone();
        async move {
            app.store.clock().pin(t_);
            app.patch(&format!("/v2/portals/{id}"), &t, body)
                .await
                .expect(200);
        }
    };
    // p0 published through February only; p1 published all along from Feb 1.
    let p0 = portal("p0", true, at("2024-02", 1, 0, 0, 0)).await;
    let p1 = portal("p1", true, at("2024-02", 1, 0, 0, 0)).await;
    set(p0, json!({"published": false}), at("2024-03", 1, 0, 0, 0)).await;
    // p2: unpublished draft, published 5th–8th, published again from the 12th.
    let p2 = portal("p2", false, at("2024-03", 2, 0, 0, 0)).await;
    set(
        p2.clone(),
        json!({"published": true}),
        at("2024-03", 5, 0, 0, 0),
    )
    .await;
    set(
        p2.clone(),
        json!({"published": false}),
        at("2024-03", 8, 0, 0, 0),
    )
    .await;
    // p3 published the second p2 is unpublished: never together.
    let p3 = portal("p3", true, at("2024-03", 8, 0, 0, 0)).await;
    set(
        p2.clone(),
        json!({"published": true}),
        at("2024-03", 12, 0, 0, 0),
    )
    .await;
    // Renaming or re-publishing a published portal changes nothing.
    set(
        p3.clone(),
        json!({"name": "p3b", "published": true}),
        at("2024-03", 13, 0, 0, 0),
    )
    .await;
    // A draft never counts.
    portal("draft", false, at("2024-03", 14, 0, 0, 0)).await;
    app.store.clock().pin(at("2024-03", 20, 0, 0, 0));
    app.delete(&format!("/v2/portals/{p1}"), &t)
        .await
        .expect(204);

    app.store.clock().pin(at("2024-05", 1, 0, 0, 0));
    let feb = usage(&app, &t, "period=2024-02").await;
    assert_eq!(feb["active_portals"], 2);
    assert_eq!(feb["active_portals_peak_at"], at("2024-02", 1, 0, 0, 0));
    // March: p1 alone, p1+p2 (5th), p1+p3 (8th), p1+p2+p3 (12th–20th).
    let mar = usage(&app, &t, "period=2024-03").await;
    assert_eq!(mar["active_portals"], 3);
    assert_eq!(mar["active_portals_peak_at"], at("2024-03", 12, 0, 0, 0));
    let apr = usage(&app, &t, "period=2024-04").await;
    assert_eq!(apr["active_portals"], 2);
    assert_eq!(apr["active_portals_peak_at"], at("2024-04", 1, 0, 0, 0));
}

#[tokio::test]
async fn api_calls_sum_the_days_of_the_period() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let other = app.token("other-org", Role::Admin).await;
    let (cp_a, _) = app.control_plane(&t, "a").await;
    let (cp_b, _) = app.control_plane(&t, "b").await;
    let (cp_x, _) = app.control_plane(&other, "x").await;
    let org = usage(&app, &t, "period=2024-03").await["organization_id"]
        .as_str()
        .expect("organization_id")
        .to_string();
    let other_org = usage(&app, &other, "period=2024-03").await["organization_id"]
        .as_str()
        .expect("organization_id")
        .to_string();
    let gone = uuid::Uuid::new_v4().to_string();
    let pool = sqlx::AnyPool::connect(&app.database_url)
        .await
        .expect("connect to the test database");
    for (o, cp, day, count) in [
        (&org, &cp_a, "2024-02-29", 1_000_i64),
        (&org, &cp_a, "2024-03-01", 10),
        (&org, &cp_a, "2024-03-31", 20),
        (&org, &cp_b, "2024-03-15", 5_000_000_000),
        (&org, &gone, "2024-03-02", 7),
        (&org, &cp_b, "2024-04-01", 100),
        (&other_org, &cp_x, "2024-03-10", 999),
    ] {
        sqlx::query(
            "INSERT INTO billing_api_calls (organization_id, control_plane_id, day, count) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(o.as_str())
        .bind(cp.as_str())
        .bind(day)
        .bind(count)
        .execute(&pool)
        .await
        .expect("insert billing_api_calls");
    }
    pool.close().await;

    app.store.clock().pin(at("2024-04", 1, 12, 0, 0));
    let mar = usage(&app, &t, "period=2024-03").await;
    assert_eq!(mar["api_calls"], 5_000_000_037_i64);
    assert_eq!(cp_usage(&mar, &cp_a)["api_calls"], 30);
    assert_eq!(cp_usage(&mar, &cp_b)["api_calls"], 5_000_000_000_i64);
    // A control plane deleted since still shows its calls.
    assert_eq!(cp_usage(&mar, &gone)["api_calls"], 7);
    assert_eq!(cp_usage(&mar, &gone)["control_plane_name"], Value::Null);
    let feb = usage(&app, &t, "period=2024-02").await;
    assert_eq!(feb["api_calls"], 1000);
    // The running month counts the days so far.
    let apr = usage(&app, &t, "period=2024-04").await;
    assert_eq!(apr["api_calls"], 100);
    let x = usage(&app, &other, "period=2024-03").await;
    assert_eq!(x["api_calls"], 999);
    assert_eq!(cp_usage(&x, &cp_x)["api_calls"], 999);
}

#[tokio::test]
async fn malformed_periods_are_refused_naming_period() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    for query in [
        "",
        "period=",
        "period=2024-13",
        "period=2024-00",
        "period=2024-3",
        "period=24-03",
        "period=2024-03-01",
        "period=March",
        "period=1969-12",
    ] {
        let reply = app
            .get(&format!("/v2/billing/usage?{query}"), &t)
            .await
            .expect(400);
        assert_eq!(reply.invalid_fields(), vec!["period"], "{query}");
    }
    let reply = app
        .get("/v2/billing/usage?period=2024-03&organization_id=nope", &t)
        .await
        .expect(400);
    assert_eq!(reply.invalid_fields(), vec!["organization_id"]);
}

#[tokio::test]
async fn usage_is_scoped_to_the_organization() {
    let app = TestApp::start().await;
    let a = app.token("org-a", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let b = app.token("org-b", Role::Admin).await;
    let operator = app.token("operators", Role::Operator).await;
    let tl = Timeline {
        app: &app,
        token: b.clone(),
    };
    let (_, base_b) = app.control_plane(&b, "b").await;
    tl.create_service(&base_b, "only-b", at("2024-03", 3, 0, 0, 0))
        .await;
    app.post(
        "/v2/portals",
        &b,
        json!({"name": "docs", "published": true}),
    )
    .await
    .expect(201);
    app.store.clock().pin(at("2024-04", 1, 0, 0, 0));

    let org_a = usage(&app, &a, "period=2024-03").await;
    assert_eq!(org_a["gateway_services"], 0);
    assert_eq!(org_a["active_portals"], 0);
    assert_eq!(org_a["control_planes"], json!([]));
    let org_b = usage(&app, &b, "period=2024-03").await;
    assert_eq!(org_b["gateway_services"], 1);
    assert_eq!(org_b["active_portals"], 1);
    let org_b_id = org_b["organization_id"]
        .as_str()
        .expect("organization_id")
        .to_string();
    let org_a_id = org_a["organization_id"]
        .as_str()
        .expect("organization_id")
        .to_string();

    // Viewers read their own organisation's usage.
    assert_eq!(usage(&app, &viewer, "period=2024-03").await, org_a);
    // Another organisation's usage is "not found" except for operators.
    app.get(
        &format!("/v2/billing/usage?period=2024-03&organization_id={org_b_id}"),
        &a,
    )
    .await
    .expect(404);
    let own = usage(
        &app,
        &a,
        &format!("period=2024-03&organization_id={org_a_id}"),
    )
    .await;
    assert_eq!(own, org_a);
    let seen = usage(
        &app,
        &operator,
        &format!("period=2024-03&organization_id={org_b_id}"),
    )
    .await;
    assert_eq!(seen, org_b);
    app.get(
        &format!(
            "/v2/billing/usage?period=2024-03&organization_id={}",
            uuid::Uuid::new_v4()
        ),
        &operator,
    )
    .await
    .expect(404);
    app.call(Method::GET, "/v2/billing/usage?period=2024-03", None, None)
        .await
        .expect(401);
}

#[tokio::test]
async fn refused_writes_leave_the_billing_history_alone() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let tl = Timeline {
        app: &app,
        token: t.clone(),
    };
    let (_, base) = app.control_plane(&t, "cp").await;
    let svc = tl
        .create_service(&base, "orders", at("2024-03", 1, 0, 0, 0))
        .await;
    // A duplicate name is refused: no second lifetime starts.
    app.store.clock().pin(at("2024-03", 2, 0, 0, 0));
    app.post(
        &format!("{base}/services"),
        &t,
        json!({"name": "orders", "url": "http://x.internal"}),
    )
    .await
    .expect(409);
    // A delete refused because a route still uses the service does not end its lifetime.
    app.post(
        &format!("{base}/routes"),
        &t,
        json!({"name": "r", "paths": ["/orders"], "service": {"id": svc}}),
    )
    .await
    .expect(201);
    app.store.clock().pin(at("2024-03", 3, 0, 0, 0));
    app.delete(&format!("{base}/services/{svc}"), &t)
        .await
        .expect(409);
    // A portal that does not exist cannot be published.
    app.patch(
        &format!("/v2/portals/{}", uuid::Uuid::new_v4()),
        &t,
        json!({"published": true}),
    )
    .await
    .expect(404);

    app.store.clock().pin(at("2024-05", 1, 0, 0, 0));
    let mar = usage(&app, &t, "period=2024-03").await;
    assert_eq!(mar["gateway_services"], 1);
    assert_eq!(mar["active_portals"], 0);
    // Still counted through April: the refused delete did not end it.
    let apr = usage(&app, &t, "period=2024-04&include=peak_services").await;
    assert_eq!(apr["gateway_services"], 1);
    assert_eq!(apr["peak_services"][0]["service_id"], svc.as_str());
    assert_eq!(
        apr["peak_services"][0]["created_at"],
        at("2024-03", 1, 0, 0, 0)
    );
}

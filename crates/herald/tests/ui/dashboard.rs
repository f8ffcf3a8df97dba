//! An operator's night: sign in, find the failing endpoint and its dead letter,
//! replay it once the receiver is fixed, disable an endpoint that is gone; a tenant
//! token sees only its tenant; no page without a session; no form without its CSRF
//! token.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::browser::Browser;
use crate::helpers::{spawn_app_with, Receiver, Reply, TestApp};

const ADMIN: &str = "admin-token-for-the-dashboard";

async fn app() -> TestApp {
    spawn_app_with(|c| c.admin_token = Some(serde_json::from_value(json!(ADMIN)).unwrap())).await
}

/// Where screenshots go: `HERALD_TEST_SCREENSHOTS` when set, else the app's
/// temporary directory.
fn shots(app: &TestApp, test: &str) -> PathBuf {
    match std::env::var_os("HERALD_TEST_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir).join(test),
        None => app._dir.path().join("screenshots"),
    }
}

browser_test! {
async fn an_operator_replays_a_dead_letter_and_disables_an_endpoint() {
    let app = app().await;
    let rx = Receiver::start().await;
    // The receiver is broken (410: a permanent failure) until it is fixed.
    rx.script("/orders", [Reply::status(410)]);
    app.tenant("acme").await;
    let orders = app.endpoint("acme", json!({"url": rx.url("/orders"), "description": "orders"})).await;
    let gone = app.endpoint("acme", json!({"url": rx.url("/gone"), "event_types": ["audit"]})).await;
    let message = app.message("acme", "order.created", json!({"order": 42})).await;
    app.settled("acme", &message, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    let delivery = dead["data"][0]["id"].as_str().unwrap().to_string();

    let browser = Browser::start(&shots(&app, "operator")).await;
    browser.open(&app.base, "/ui/tenants/acme").await;
    assert_eq!(browser.path().await, "/ui/login", "no session: the sign-in form");
    browser.shot("login").await;
    browser.sign_in(&app.base, ADMIN).await;
    browser.wait_path("/ui/tenants").await;
    assert!(browser.text("#tenants").await.contains("acme"));
    browser.shot("tenants").await;

    // The tenant's endpoints: the failing one shows its dead letter and its failures.
    browser.click("#tenants a[href='/ui/tenants/acme']").await;
    browser.wait_path("/ui/tenants/acme").await;
    let row = browser.text(&format!("#endpoints tr:has(a[href$='{orders}'])")).await;
    assert!(row.contains("0.0%") && row.contains(" 1"), "one try, none succeeded, one dead: {row}");
    // The live chart redraws from new data without a reload.
    let first = drawn(&browser).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while drawn(&browser).await == first {
        assert!(Instant::now() < deadline, "the chart did not redraw within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!browser.text("#throughput-now").await.is_empty());
    browser.shot("tenant").await;

    // The dead letter, by its id, replayed from the page.
    browser.click("a[href='/ui/tenants/acme/dead-letters']").await;
    browser.wait_path("/ui/tenants/acme/dead-letters").await;
    let table = browser.text("#dead-letters").await;
    assert!(table.contains(&delivery) && table.contains(&message), "{table}");
    browser.shot("dead-letters").await;
    browser.click(&format!("button[form='replay-{delivery}']")).await;
    assert!(browser.text("#replayed").await.contains("Replayed 1"));
    let page = browser
        .until(&app.base, &format!("/ui/tenants/acme/messages/{message}"), "the replay to succeed", |s| {
            s.contains(">succeeded<")
        })
        .await;
    assert!(page.contains(&delivery), "the replay kept the delivery and its id");
    assert_eq!(browser.text("#message-status").await, "succeeded");
    let attempts = browser.text("#attempts").await;
    assert!(attempts.contains("HTTP 410") && attempts.contains("HTTP 200"), "every attempt is shown: {attempts}");
    browser.shot("message").await;
    assert_eq!(rx.requests("/orders").len(), 2);

    // Messages, filtered by status.
    browser.open(&app.base, "/ui/tenants/acme/messages?status=succeeded").await;
    assert!(browser.text("#messages").await.contains(&message));
    browser.open(&app.base, "/ui/tenants/acme/messages?status=dead").await;
    assert!(!browser.text("#messages").await.contains(&message));
    browser.shot("messages").await;

    // An endpoint that is gone, disabled from its page.
    browser.open(&app.base, &format!("/ui/tenants/acme/endpoints/{gone}")).await;
    browser.click("#disable").await;
    browser.wait_text("#state", |t| t.starts_with("disabled")).await;
    let (_, endpoint) = app.get(&format!("/api/v1/tenants/acme/endpoints/{gone}")).await;
    assert_eq!(endpoint["active"], false);
    browser.shot("endpoint").await;

    browser.click(".logout button").await;
    browser.wait_path("/ui/login").await;
    browser.open(&app.base, "/ui/tenants").await;
    assert_eq!(browser.path().await, "/ui/login", "signed out");
    browser.close().await;
}
}

/// When the chart was last drawn (`data-drawn`), or "" before the first time.
async fn drawn(browser: &Browser) -> String {
    browser
        .client
        .find(fantoccini::Locator::Css("#throughput"))
        .await
        .expect("the chart")
        .attr("data-drawn")
        .await
        .expect("its attribute")
        .unwrap_or_default()
}

browser_test! {
async fn a_tenant_token_sees_only_its_tenant() {
    let app = app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/b", Reply::status(410));
    app.tenant("tenant-a").await;
    app.tenant("tenant-b").await;
    let a_endpoint = app.endpoint("tenant-a", json!({"url": rx.url("/a")})).await;
    let b_endpoint = app.endpoint("tenant-b", json!({"url": rx.url("/b")})).await;
    let b_message = app.message("tenant-b", "secret.plan", json!({})).await;
    app.settled("tenant-b", &b_message, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/tenant-b/dead-letters").await;
    let b_dead = dead["data"][0]["id"].as_str().unwrap().to_string();
    let (_, made) = app.post("/api/v1/tenants/tenant-a/tokens", json!({"name": "ui"})).await;
    let token = made["token"].as_str().unwrap().to_string();

    let browser = Browser::start(&shots(&app, "tenant")).await;
    browser.sign_in(&app.base, &token).await;
    browser.wait_path("/ui/tenants/tenant-a").await;
    let own = browser.source().await;
    assert!(own.contains(&a_endpoint) && !own.contains(&b_endpoint));
    assert!(!own.contains("tenant-b"), "no link to another tenant");
    browser.shot("own-tenant").await;

    browser.open(&app.base, "/ui/tenants").await;
    browser.wait_path("/ui/tenants/tenant-a").await;
    for path in [
        "/ui/tenants/tenant-b".to_string(),
        format!("/ui/tenants/tenant-b/endpoints/{b_endpoint}"),
        format!("/ui/tenants/tenant-a/endpoints/{b_endpoint}"),
        "/ui/tenants/tenant-b/messages".to_string(),
        format!("/ui/tenants/tenant-b/messages/{b_message}"),
        format!("/ui/tenants/tenant-a/messages/{b_message}"),
        "/ui/tenants/tenant-b/dead-letters".to_string(),
        "/ui/tenants/tenant-b/throughput.json".to_string(),
    ] {
        browser.open(&app.base, &path).await;
        let page = browser.source().await;
        assert!(
            page.contains("Not found") || page.contains("not_found"),
            "{path} is not found for tenant-a"
        );
        for secret in [&b_endpoint, &b_message, &b_dead, &"secret.plan".to_string()] {
            assert!(!page.contains(secret.as_str()), "{path} shows {secret}");
        }
    }
    browser.shot("other-tenant").await;
    browser.open(&app.base, "/ui/tenants/tenant-a/dead-letters").await;
    assert!(!browser.source().await.contains(&b_dead));
    browser.close().await;
}
}

browser_test! {
async fn no_page_without_a_session_and_no_form_without_its_csrf_token() {
    let app = app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let endpoint = app.endpoint("acme", json!({"url": rx.url("/h")})).await;
    let message = app.message("acme", "a", json!({})).await;

    let browser = Browser::start(&shots(&app, "guards")).await;
    for path in [
        "/ui".to_string(),
        "/ui/tenants".to_string(),
        "/ui/tenants/acme".to_string(),
        format!("/ui/tenants/acme/endpoints/{endpoint}"),
        "/ui/tenants/acme/messages".to_string(),
        format!("/ui/tenants/acme/messages/{message}"),
        "/ui/tenants/acme/dead-letters".to_string(),
    ] {
        browser.open(&app.base, &path).await;
        assert_eq!(browser.path().await, "/ui/login", "{path} without a session");
    }
    browser.sign_in(&app.base, "not-a-token").await;
    assert!(browser.text(".error").await.contains("not valid"));

    browser.sign_in(&app.base, ADMIN).await;
    browser.open(&app.base, &format!("/ui/tenants/acme/endpoints/{endpoint}")).await;
    // The disable form without its CSRF token, then with a wrong one.
    browser
        .client
        .execute("document.querySelector('#disable').form.querySelector('[name=csrf]').remove()", vec![])
        .await
        .expect("the script runs");
    browser.click("#disable").await;
    browser.wait_source("the refusal", |s| s.contains("CSRF")).await;
    browser.shot("csrf-refused").await;
    browser.open(&app.base, &format!("/ui/tenants/acme/endpoints/{endpoint}")).await;
    browser
        .client
        .execute("document.querySelector('#disable').form.querySelector('[name=csrf]').value = 'forged'", vec![])
        .await
        .expect("the script runs");
    browser.click("#disable").await;
    browser.wait_source("the refusal", |s| s.contains("CSRF")).await;
    let (_, after) = app.get(&format!("/api/v1/tenants/acme/endpoints/{endpoint}")).await;
    assert_eq!(after["active"], true, "nothing changed");
    browser.close().await;

    // The status of a refused post, and of a page without a session, over plain HTTP.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(format!("{}/ui/tenants/acme", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/ui/login");
    let login = http.get(format!("{}/ui/login", app.base)).send().await.unwrap();
    let login_cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = login_cookie.split_once('=').unwrap().1.to_string();
    let signed = http
        .post(format!("{}/ui/login", app.base))
        .header("cookie", &login_cookie)
        .form(&[("token", ADMIN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let set = signed.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let session = set.split(';').next().unwrap().to_string();
    let refused = http
        .post(format!("{}/ui/tenants/acme/endpoints/{endpoint}/active", app.base))
        .header("cookie", &session)
        .form(&[("active", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
}

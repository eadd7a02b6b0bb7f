//! `iras serve` as operators and monitoring systems meet it: the real binary on a free port,
//! driven over HTTP, killed and restarted, and clicked through in headless Chromium.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::*;

/// The README's quickstart, step by step.
#[tokio::test]
async fn quickstart_alert_plan_approve_postmortem() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let c = server.client();
    let url = &server.url;

    let id = post_alert(
        &c,
        url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    let waiting = wait_status(&c, url, &id, "awaiting_approval").await;
    assert_eq!(
        waiting["hypothesis"]["root_cause_service"],
        "payment-service"
    );
    let steps = waiting["plan"]["steps"].as_array().unwrap().len();
    assert!(steps > 0);

    let r = c
        .post(format!("{url}/incidents/{id}/approve"))
        .bearer_auth(server.api_key())
        .json(&json!({"approver": "alice", "comment": "roll it back"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = wait_status(&c, url, &id, "resolved").await;
    assert_eq!(done["steps"].as_array().unwrap().len(), steps);

    let md = c
        .get(format!("{url}/incidents/{id}/postmortem"))
        .header("Accept", "text/markdown")
        .send()
        .await
        .unwrap();
    assert_eq!(md.status(), 200);
    let text = md.text().await.unwrap();
    assert!(text.starts_with("# Post-mortem"), "{text}");
    assert!(
        text.contains("approved by alice via api: roll it back"),
        "{text}"
    );
}

#[tokio::test]
async fn an_approval_link_survives_a_killed_server_and_decides_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let c = server.client();
    let id = post_alert(
        &c,
        &server.url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    let waiting = wait_status(&c, &server.url, &id, "awaiting_approval").await;
    let steps = waiting["plan"]["steps"].as_array().unwrap().len();
    let link = server
        .approval_links()
        .pop()
        .expect("the server printed the link");
    let port = server.url.rsplit(':').next().unwrap().to_string();
    server.kill();

    // Same data dir; the link carries the old port, so ask the new server for its path.
    let server = Server::start(&data);
    let path = &link[link.find("/approvals/").unwrap()..];
    let again = server.approval_links();
    assert!(
        again.iter().any(|l| l.ends_with(path)),
        "the restarted server announces the same pending link: {again:?}"
    );
    let page = c.get(format!("{}{path}", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200, "link from port {port} still valid");
    // The form posts back the token this render of the page carries.
    let html = page.text().await.unwrap();
    let marker = "name=\"form_token\" value=\"";
    let at = html.find(marker).expect("the page's form has a token") + marker.len();
    let form_token = html[at..at + html[at..].find('"').unwrap()].to_string();

    let query: Vec<(String, String)> = url_query(path);
    let approval_id = path
        .trim_start_matches("/approvals/")
        .split('?')
        .next()
        .unwrap();
    let mut form = query.clone();
    form.push(("decision".into(), "approve".into()));
    form.push(("approver".into(), "bob".into()));
    form.push(("form_token".into(), form_token));
    let r = c
        .post(format!("{}/approvals/{approval_id}", server.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = c
        .post(format!("{}/approvals/{approval_id}", server.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409, "a link is single-use");

    let done = wait_status(&c, &server.url, &id, "resolved").await;
    let applied: Vec<&Value> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["phase"] == "apply")
        .collect();
    assert_eq!(applied.len(), steps, "each step applied exactly once");
    assert_eq!(
        done["approval"]["decision"]["approver"],
        "bob (self-declared)"
    );
    assert_eq!(
        done["approval"]["decision"]["identity"]["kind"],
        "self_declared"
    );
    assert_eq!(done["approval"]["decision"]["identity"]["name"], "bob");
    assert_eq!(done["approval"]["decision"]["channel"], "page");
}

fn url_query(path: &str) -> Vec<(String, String)> {
    path.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn two_hundred_concurrent_alerts_make_two_hundred_separate_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let c = server.client();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let c = c.clone();
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            let title = format!("High error rate on payment-service (shard {n})");
            let id = post_alert(&c, &url, &payment_alert(&title)).await;
            (title, id)
        }));
    }
    let mut posted = Vec::new();
    for t in tasks {
        posted.push(t.await.unwrap());
    }
    let mut ids: Vec<&String> = posted.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "one incident per alert");

    for (title, id) in &posted {
        let v = wait_status(&c, &server.url, id, "awaiting_approval").await;
        assert_eq!(&v["title"], title, "incident {id} carries its own alert");
        assert_eq!(v["incident_id"], id.as_str());
        assert_eq!(v["rca"].as_array().unwrap().len(), 1);
    }
    // Listing pages through all of them, each once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = c.get(format!("{}/incidents?limit=64", server.url));
        if let Some(cur) = &cursor {
            req = req.query(&[("cursor", cur)]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        for i in page["incidents"].as_array().unwrap() {
            seen.push(i["incident_id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200);
}

#[tokio::test]
async fn bad_alerts_get_their_status_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let c = server.client();
    let url = &server.url;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            c.post(format!("{url}/webhook/alert"))
                .header("Content-Type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            c.post(format!("{url}/webhook/alert"))
                .json(&json!({"timestamp": "2026-01-01T00:00:00Z"})),
            422,
        ),
        (
            c.post(format!("{url}/webhook/alert"))
                .json(&json!({"title": 42, "timestamp": "2026-01-01T00:00:00Z"})),
            422,
        ),
        (
            c.post(format!("{url}/webhook/alert"))
                .json(&json!({"title": "t", "timestamp": "yesterday"})),
            422,
        ),
        (
            c.post(format!("{url}/webhook/alert"))
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{"title":"t","timestamp":"2026-01-01T00:00:00Z","pad":"{}"}}"#,
                    "x".repeat(300 * 1024)
                )),
            413,
        ),
        (
            c.post(format!("{url}/incidents/inc-unknown/approve"))
                .bearer_auth(server.api_key()),
            404,
        ),
        (
            client().post(format!("{url}/incidents/inc-unknown/approve")),
            401,
        ),
        // Reads need a key too; the same requests under a name the server does not answer for
        // (a DNS-rebinding page) are refused before any route.
        (client().get(format!("{url}/incidents")), 401),
        (
            c.get(format!("{url}/incidents"))
                .header("host", "rebind.attacker.example"),
            421,
        ),
    ];
    for (req, want) in cases {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, want, "{body}");
    }
    let list: Value = c
        .get(format!("{url}/incidents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["incidents"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_operator_cli_lists_shows_and_approves_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let c = server.client();
    let id = post_alert(
        &c,
        &server.url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    wait_status(&c, &server.url, &id, "awaiting_approval").await;

    let iras = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_iras"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .env_remove("APPROVAL_API_KEY")
            .output()
            .unwrap()
    };
    let second = post_alert(
        &c,
        &server.url,
        &payment_alert("Checkout latency above SLO"),
    )
    .await;
    wait_status(&c, &server.url, &second, "awaiting_approval").await;
    let out = iras(&["incidents", "--status", "awaiting_approval"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains(&id) && listed.contains(&second), "{listed}");
    let out = iras(&["incidents", "--limit", "1"]);
    let newest = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        newest.lines().count(),
        2,
        "a header and one incident: {newest}"
    );
    assert!(newest.contains(&second), "newest first: {newest}");
    let out = iras(&["incident", &id]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("rollback:"), "{shown}");
    let out = iras(&["approve", &id, "--as", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = wait_status(&c, &server.url, &id, "resolved").await;
    assert_eq!(done["approval"]["decision"]["approver"], "carol");
    let out = iras(&["reject", &id]);
    assert!(!out.status.success(), "a second decision is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
}

/// Headless Chromium (Debian's package) driven by playwright-core: the test command installs
/// both; nothing is downloaded by the test.
#[tokio::test]
async fn a_person_approves_in_the_browser_and_a_second_click_is_refused() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let browser_dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready =
        Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var("IRAS_REQUIRE_BROWSER").is_err(),
            "chromium or playwright-core missing; ./scripts/test.sh installs them"
        );
        eprintln!("browser test not run: chromium or playwright-core missing (./scripts/test.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let c = server.client();
    let id = post_alert(
        &c,
        &server.url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    wait_status(&c, &server.url, &id, "awaiting_approval").await;
    let link = server
        .approval_links()
        .pop()
        .expect("approval link printed");
    let shot = dir.path().join("approval.png");

    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("approve.mjs"))
        .arg(&link)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "browser check failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!seen["steps"].as_array().unwrap().is_empty());
    assert!(shot.exists(), "a screenshot of the page was taken");

    let done = wait_status(&c, &server.url, &id, "resolved").await;
    assert_eq!(done["approval"]["decision"]["channel"], "page");
    assert_eq!(
        done["approval"]["decision"]["approver"],
        "alice (browser test) (self-declared)"
    );
    assert_eq!(
        done["approval"]["decision"]["identity"]["kind"],
        "self_declared"
    );
    assert!(seen["recorded"]
        .as_str()
        .is_some_and(|r| r.contains("through the link sent to")));
}

#[tokio::test]
async fn serve_honours_the_body_limit_and_the_per_source_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            ("WEBHOOK_BODY_LIMIT_BYTES", "2048"),
            ("WEBHOOK_SECRET_ALERTMANAGER", "am-secret"),
        ],
    );
    let c = server.client();
    let mut big = payment_alert("High error rate on payment-service");
    big["blob"] = json!("x".repeat(4096));
    let r = c
        .post(format!("{}/webhook/alert", server.url))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("2048"));
    // A small alert still goes in; the Alertmanager route wants its own secret.
    post_alert(
        &c,
        &server.url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    let am = json!({"version": "4", "status": "firing", "receiver": "iras", "groupKey": "{}:{}",
                    "alerts": [{"status": "firing", "labels": {"alertname": "Down"},
                                "startsAt": chrono::Utc::now().to_rfc3339()}]});
    let refused = c
        .post(format!("{}/webhook/alertmanager", server.url))
        .json(&am)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = c
        .post(format!("{}/webhook/alertmanager", server.url))
        .bearer_auth("am-secret")
        .json(&am)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "{}", accepted.text().await.unwrap());
    let form = c
        .post(format!("{}/webhook/alert", server.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("title=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let c = server.client();
    post_alert(
        &c,
        &server.url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the directory");
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // The lock and the address file say nothing secret; everything else is private.
        if name == "serve.lock" || name == "server.json" {
            continue;
        }
        assert_eq!(mode(&path), 0o600, "{name}");
    }
}

fn iras_audit(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_iras"))
        .args(["audit"])
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("AUDIT_SIGNING_KEY")
        .output()
        .expect("iras runs")
}

/// Issue 13's "done when": the audit log of an incident run by the real server, read through
/// its router, verified by the real CLI, and an entry edited in the database found by name.
#[tokio::test]
async fn a_tampered_audit_entry_is_found_by_iras_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let c = server.client();
    let url = server.url.clone();
    let id = post_alert(
        &c,
        &url,
        &payment_alert("High error rate on payment-service"),
    )
    .await;
    let waiting = wait_status(&c, &url, &id, "awaiting_approval").await;
    let steps = waiting["plan"]["steps"].as_array().unwrap().len();
    let r = c
        .post(format!("{url}/incidents/{id}/approve"))
        .bearer_auth(server.api_key())
        .json(&json!({"approver": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_status(&c, &url, &id, "resolved").await;
    // The post-mortem is the last stage: once it is there, the log is complete.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c
        .get(format!("{url}/incidents/{id}/postmortem"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "no post-mortem");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let anonymous = client()
        .get(format!("{url}/incidents/{id}/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let log: Value = c
        .get(format!("{url}/incidents/{id}/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1 + steps, "{log:#}");
    assert_eq!(entries[0]["event"]["kind"], "decision");
    assert_eq!(entries[0]["actor"], "alice via api");
    assert_eq!(log["verification"]["intact"], true, "{log:#}");
    assert_eq!(log["verification"]["signatures_checked"], true);
    server.kill();

    let ok = iras_audit(&["verify", &id], &data);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{} entries, chain intact, signatures checked",
            1 + steps
        )),
        "{stdout}"
    );

    // Someone with the database edits who approved.
    let db = rusqlite::Connection::open(data.join("iras.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE audit_entries SET body = json_set(body, '$.actor', 'mallory via api')
             WHERE incident_id = ?1 AND seq = 1",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let bad = iras_audit(&["verify", &id], &data);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "tampering must fail verification");
    assert!(
        stderr.contains("does not verify at entry 1: entry 1 was altered"),
        "{stderr}"
    );
    let shown = iras_audit(&["show", &id], &data);
    assert!(!shown.status.success());
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("mallory via api"),
        "show prints the entries as stored"
    );

    // Deleting an entry instead is found at the gap it leaves.
    let db = rusqlite::Connection::open(data.join("iras.db")).unwrap();
    db.execute(
        "UPDATE audit_entries SET body = json_set(body, '$.actor', 'alice via api')
         WHERE incident_id = ?1 AND seq = 1",
        [&id],
    )
    .unwrap();
    assert!(
        iras_audit(&["verify", &id], &data).status.success(),
        "restored"
    );
    db.execute(
        "DELETE FROM audit_entries WHERE incident_id = ?1 AND seq = 2",
        [&id],
    )
    .unwrap();
    drop(db);
    let gap = iras_audit(&["verify", &id], &data);
    assert!(!gap.status.success());
    assert!(
        String::from_utf8_lossy(&gap.stderr).contains("entry 2 is missing or out of place"),
        "{}",
        String::from_utf8_lossy(&gap.stderr)
    );
}

//! The dashboard's security rules through `web::app`: loopback `Host` only (DNS rebinding), the
//! Origin/Referer check on state-changing requests (CSRF), the token on a non-loopback server,
//! response headers, escaping of user text on every page and chart, and no directory listing.

use std::sync::{Arc, Mutex};

use axum::http::{header, Method, StatusCode};
use cxr8::service;
use cxr8::store::{NewRun, RunStatus, Store};
use cxr8::web::{FieldError, JobControl};
use serde_json::{json, Value};

use crate::util::{Reply, TestApp, HOST};

const SCRIPT: &str = "<script>alert(1)</script>";
const TAG: &str = "<img src=x onerror=alert(2)>";
const NOTE: &str = "<script>alert(3)</script> & \"quotes\"";

/// Accepts every config and counts what was queued or cancelled, so a refused request can be
/// shown to have changed nothing.
#[derive(Default)]
struct CountingJobs {
    submitted: Mutex<Vec<Value>>,
    cancelled: Mutex<Vec<String>>,
}

impl JobControl for CountingJobs {
    fn submit(&self, config: Value) -> Result<String, Vec<FieldError>> {
        self.submitted.lock().unwrap().push(config);
        Ok("queued-id".into())
    }
    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        self.cancelled.lock().unwrap().push(id.into());
        Ok(())
    }
    fn resume(&self, _id: &str) -> Result<(), service::Error> {
        Ok(())
    }
    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

struct Fixture {
    app: TestApp,
    jobs: Arc<CountingJobs>,
    /// A finished run named like an attack, with a hostile tag and note.
    hostile: String,
    /// A plain finished run, to compare with.
    plain: String,
}

fn add_run(store: &Store, name: &str, tags: &[String]) -> String {
    let config = json!({"model": "resnet-18", "lr": 0.001});
    let id = store
        .create_run(&NewRun {
            name,
            config: &config,
            dataset: "demo",
            model: "resnet-18",
            image_size: 64,
            epochs_planned: 2,
            tags,
        })
        .unwrap();
    store.set_status(&id, RunStatus::Running, None).unwrap();
    for epoch in 1..=2 {
        let per_label = json!([{"label": "Effusion", "auroc": 0.7, "ap": 0.5, "f1": 0.5,
            "tp": 3, "fp": 1, "fn": 1, "tn": 5, "support": 4}]);
        let metrics = json!({"train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.7,
            "val_mean_auroc": 0.7, "lr": 0.001, "val_per_label": per_label});
        store.record_epoch(&id, epoch, &metrics, None).unwrap();
    }
    store.set_status(&id, RunStatus::Done, None).unwrap();
    id
}

fn fixture(token: Option<&str>) -> Fixture {
    let mut setup = TestApp::in_memory();
    let store = setup.store();
    let hostile = add_run(&store, SCRIPT, &[TAG.to_string()]);
    store.update_meta(&hostile, SCRIPT, &[TAG.to_string()], NOTE).unwrap();
    let plain = add_run(&store, "plain", &[]);
    let jobs = Arc::new(CountingJobs::default());
    setup = setup.jobs(jobs.clone());
    if let Some(token) = token {
        setup = setup.token(token);
    }
    Fixture {
        app: setup.build(),
        jobs,
        hostile,
        plain,
    }
}

impl Fixture {
    /// `POST /api/runs` with a JSON config and exactly the given headers.
    async fn submit(&self, headers: &[(&str, &str)]) -> Reply {
        self.app
            .request(Method::POST, "/api/runs", headers, r#"{"model": "resnet-18"}"#)
            .await
    }

    fn submitted(&self) -> usize {
        self.jobs.submitted.lock().unwrap().len()
    }
}

#[tokio::test]
async fn loopback_host_names_are_served() {
    let f = fixture(None);
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LOCALHOST:8080"] {
        let reply = f.app.request(Method::GET, "/", &[("host", host)], "").await;
        assert_eq!(reply.status, StatusCode::OK, "Host {host}: {}", reply.text());
    }
    // In-process callers (no Host at all) cannot be a browser and are served.
    assert_eq!(f.app.request(Method::GET, "/", &[], "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn other_host_names_are_refused_on_a_loopback_server() {
    let f = fixture(None);
    for uri in ["/", "/api/runs", &format!("/runs/{}", f.plain)] {
        for host in ["evil.example:8080", "127.0.0.1.evil.example:8080", "192.168.1.5:8080"] {
            let reply = f.app.request(Method::GET, uri, &[("host", host)], "").await;
            assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{uri} with Host {host}");
            assert!(reply.text().contains("use http://127.0.0.1:8080/"), "{}", reply.text());
            assert!(!reply.text().contains(&f.plain), "no run data leaks: {}", reply.text());
        }
    }
    // A rebound name cannot write either, even with a matching Origin.
    let reply = f
        .submit(&[
            ("host", "evil.example:8080"),
            ("origin", "http://evil.example:8080"),
            ("content-type", "application/json"),
        ])
        .await;
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(f.submitted(), 0);
}

#[tokio::test]
async fn state_changes_need_a_matching_origin_or_referer() {
    let f = fixture(None);
    let json = ("content-type", "application/json");
    let host = ("host", HOST);
    let cross_site: [&[(&str, &str)]; 5] = [
        &[host, json, ("origin", "http://evil.example")],
        &[host, json, ("origin", "http://127.0.0.1:9999")],
        &[host, json, ("origin", "null")],
        &[host, json, ("referer", "http://evil.example/page")],
        &[host, json, ("referer", "http://127.0.0.1:8080@evil.example/")],
    ];
    for headers in cross_site {
        let reply = f.submit(headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}: {}", reply.text());
        assert!(reply.text().contains("cross-site"), "{}", reply.text());
    }
    assert_eq!(f.submitted(), 0, "nothing queued by a refused request");

    let same_site: [&[(&str, &str)]; 4] = [
        &[host, json, ("origin", "http://127.0.0.1:8080")],
        &[host, json, ("referer", "http://127.0.0.1:8080/runs/new")],
        &[("host", "localhost:8080"), json, ("origin", "http://localhost:8080")],
        // curl and scripts: JSON without Origin or Referer.
        &[host, json],
    ];
    for headers in same_site {
        let reply = f.submit(headers).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{headers:?}: {}", reply.text());
    }
    assert_eq!(f.submitted(), same_site.len());
}

#[tokio::test]
async fn form_posts_without_origin_or_referer_are_refused() {
    let f = fixture(None);
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain;charset=UTF-8",
    ] {
        let reply = f
            .app
            .request(
                Method::POST,
                "/api/runs",
                &[("host", HOST), ("content-type", content_type)],
                "model=resnet-18",
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{content_type}");
        assert!(
            reply.text().contains("without an Origin or Referer"),
            "{}",
            reply.text()
        );
    }
    assert_eq!(f.submitted(), 0);
}

#[tokio::test]
async fn cross_site_cancel_and_delete_change_nothing() {
    let f = fixture(None);
    let evil = [("host", HOST), ("origin", "http://evil.example")];
    let cancel = f
        .app
        .request(Method::POST, &format!("/api/runs/{}/cancel", f.plain), &evil, "")
        .await;
    assert_eq!(cancel.status, StatusCode::FORBIDDEN);
    assert!(f.jobs.cancelled.lock().unwrap().is_empty());
    let delete = f
        .app
        .request(Method::DELETE, &format!("/api/runs/{}", f.plain), &evil, "")
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    assert!(f.app.store().run(&f.plain).unwrap().is_some(), "the run is still there");

    let own = [("host", HOST), ("origin", "http://127.0.0.1:8080")];
    let delete = f
        .app
        .request(Method::DELETE, &format!("/api/runs/{}", f.plain), &own, "")
        .await;
    assert!(delete.status.is_success(), "{} {}", delete.status, delete.text());
    assert!(f.app.store().run(&f.plain).unwrap().is_none());
}

#[tokio::test]
async fn a_token_server_accepts_any_host_but_still_checks_token_and_origin() {
    let f = fixture(Some("s3cret"));
    let host = ("host", "192.168.1.5:8080");
    let bearer = ("authorization", "Bearer s3cret");
    let page = f.app.request(Method::GET, "/", &[host, bearer], "").await;
    assert_eq!(page.status, StatusCode::OK);
    let no_token = f.app.request(Method::GET, "/", &[host], "").await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    let wrong = f
        .app
        .request(Method::GET, "/", &[host, ("authorization", "Bearer s3cres")], "")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let json = ("content-type", "application/json");
    let cross = f.submit(&[host, bearer, json, ("origin", "http://evil.example")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let without_token = f.submit(&[host, json, ("origin", "http://192.168.1.5:8080")]).await;
    assert_eq!(without_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.submitted(), 0);
    let own = f
        .submit(&[host, bearer, json, ("origin", "http://192.168.1.5:8080")])
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text());
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let f = fixture(None);
    let refused = f.app.request(Method::GET, "/", &[("host", "evil.example")], "").await;
    for reply in [
        f.app.get("/").await,
        f.app.get(&format!("/runs/{}", f.plain)).await,
        f.app.get("/api/runs").await,
        f.app.get("/no/such/page").await,
        refused,
    ] {
        assert_eq!(reply.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(reply.headers[header::X_FRAME_OPTIONS], "DENY");
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
    }
    for uri in [
        "/api/runs".to_string(),
        format!("/api/runs/{}", f.plain),
        "/api/runs/nope".into(),
    ] {
        let reply = f.app.get(&uri).await;
        assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store", "{uri}");
    }
}

/// Every page and chart that shows a run's name, tags or notes shows them as text.
#[tokio::test]
async fn user_text_is_escaped_everywhere_it_appears() {
    let f = fixture(None);
    let pages = [
        "/".to_string(),
        "/?q=script".to_string(),
        format!("/runs/{}", f.hostile),
        format!("/compare?runs={},{}", f.hostile, f.plain),
    ];
    for uri in &pages {
        let page = f.app.get(uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(
            page.text().contains("&#60;script&#62;alert(1)"),
            "{uri} shows the name as text"
        );
        for raw in [SCRIPT, TAG, "<script>alert(3)", "onerror=alert(2)>"] {
            assert!(!page.text().contains(raw), "{uri} contains raw {raw}");
        }
    }
    let run_page = f.app.get(&format!("/runs/{}", f.hostile)).await;
    assert!(
        run_page.text().contains("&#60;img src=x onerror=alert(2)&#62;"),
        "tag shown as text"
    );
    assert!(
        run_page.text().contains("&#60;script&#62;alert(3)"),
        "note shown as text"
    );

    // Chart legends carry run names (compare) — SVG is XML, so the same holds there.
    for uri in [
        format!("/compare/charts/loss.svg?runs={},{}", f.hostile, f.plain),
        format!("/compare/charts/auroc.svg?runs={},{}", f.hostile, f.plain),
        format!("/runs/{}/charts/loss.svg", f.hostile),
    ] {
        let chart = f.app.get(&uri).await;
        assert_eq!(chart.status, StatusCode::OK, "{uri}: {}", chart.text());
        assert!(!chart.text().contains("<script"), "{uri} contains a raw script tag");
    }
    let legend = f
        .app
        .get(&format!("/compare/charts/loss.svg?runs={},{}", f.hostile, f.plain))
        .await;
    assert!(
        legend.text().contains("&lt;script&gt;"),
        "the legend shows the name as text"
    );
}

#[tokio::test]
async fn static_files_have_no_directory_listing_or_traversal() {
    let f = fixture(None);
    for uri in [
        "/static",
        "/static/",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
        "/static/style.css/",
    ] {
        let reply = f.app.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}: {}", reply.text());
        assert!(
            !reply.text().contains("style.css") && !reply.text().contains("[package]"),
            "{uri}"
        );
    }
    assert_eq!(f.app.get("/static/style.css").await.status, StatusCode::OK);
}

/// A `cxr8 serve` child process, killed when dropped (only this child, by its handle).
struct Server {
    child: std::process::Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cxr8(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cxr8"));
    command.args(args);
    command
}

/// Starts `cxr8 serve` on a free loopback port and waits for its URL line.
fn serve(data: &std::path::Path, ckpts: &std::path::Path) -> Server {
    use std::io::BufRead;
    let mut child = cxr8(&["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .arg("--ckpt-dir")
        .arg(ckpts)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the cxr8 binary starts");
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // A deadline only so a broken server fails the test instead of hanging it (first start
    // generates the demo data set).
    while let Ok(line) = received.recv_timeout(std::time::Duration::from_secs(300)) {
        if let Some(url) = line.strip_prefix("cxr8 dashboard: ") {
            return Server {
                child,
                url: url.to_string(),
            };
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cxr8 serve printed no URL; its output:\n{}", seen.join("\n"));
}

#[test]
fn a_second_server_or_trainer_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ckpts) = (dir.path().join("data"), dir.path().join("ckpts"));
    let first = serve(&data, &ckpts);
    assert!(first.url.starts_with("http://127.0.0.1:"), "{}", first.url);
    let expected = format!(
        "another cxr8 (pid {}) is serving {}; stop it or use --data-dir",
        first.child.id(),
        data.display()
    );

    let second = cxr8(&["serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&expected), "{stderr}");

    let train = cxr8(&["train", "--epochs", "1", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!train.status.success());
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(
        stderr.contains(&format!("another cxr8 (pid {}) is serving", first.child.id())) && stderr.contains("dashboard"),
        "{stderr}"
    );
    let store = Store::open(&data).unwrap();
    assert!(store.runs().unwrap().is_empty(), "the refused train recorded nothing");

    // kill -9 leaves the lock file behind; the OS lock died with the process.
    drop(first);
    assert!(data.join("cxr8.lock").is_file());
    let again = serve(&data, &ckpts);
    let text = std::fs::read_to_string(data.join("cxr8.lock")).unwrap();
    assert_eq!(text.trim(), format!("serve {}", again.child.id()));
}

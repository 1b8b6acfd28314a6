//! The dashboard over a temporary store: every route through `oneshot`, and the event stream over
//! a real loopback socket.

use std::sync::{Arc, Mutex};

use axum::http::{header, Method, StatusCode};
use cxr8::service;
use cxr8::store::{NewRun, RunStatus, Store};
use cxr8::web::{FieldError, JobControl};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{read_events, TestApp, JSON};

/// Stands in for the training engine: queues runs in the store, refuses configs without a model.
struct FakeJobs {
    store: Arc<Store>,
    submitted: Mutex<Vec<Value>>,
}

impl JobControl for FakeJobs {
    fn submit(&self, config: Value) -> Result<String, Vec<FieldError>> {
        let mut errors = Vec::new();
        if config.get("model").and_then(Value::as_str).is_none() {
            errors.push(FieldError::new("model", "choose a model, e.g. resnet-18"));
        }
        if config.get("epochs").and_then(Value::as_u64) == Some(0) {
            errors.push(FieldError::new("epochs", "train for at least 1 epoch"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.submitted.lock().unwrap().push(config.clone());
        let id = self
            .store
            .create_run(&NewRun {
                name: "submitted",
                config: &config,
                dataset: "demo",
                model: config["model"].as_str().unwrap(),
                image_size: 64,
                epochs_planned: 1,
                tags: &[],
            })
            .unwrap();
        Ok(id)
    }

    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        match self.store.run(id).unwrap() {
            Some(run) if run.status == RunStatus::Running => Ok(()),
            Some(run) => Err(service::Error::Conflict(format!("run is {}", run.status.as_str()))),
            None => Err(service::Error::UnknownRun(id.into())),
        }
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
    jobs: Arc<FakeJobs>,
    /// Finished, on the demo data set, three epochs with per-label metrics.
    done: String,
    /// Running, named like an attack.
    script: String,
}

fn per_label(auroc: f64) -> Value {
    json!([
        {"label": "Effusion", "auroc": auroc, "ap": 0.4, "f1": 0.5, "tp": 140, "fp": 31, "fn": 17, "tn": 812, "support": 157},
        {"label": "No Finding", "auroc": 0.6, "ap": 0.7, "f1": 0.6, "tp": 5, "fp": 4, "fn": 3, "tn": 2, "support": 8}
    ])
}

fn fixture() -> Fixture {
    let setup = TestApp::in_memory();
    let store = setup.store();
    let config = json!({"model": "resnet-18", "lr": 0.001, "batch_size": 32});
    let done = store
        .create_run(&NewRun {
            name: "baseline",
            config: &config,
            dataset: "demo",
            model: "resnet-18",
            image_size: 64,
            epochs_planned: 3,
            tags: &["smoke".into()],
        })
        .unwrap();
    store.set_status(&done, RunStatus::Running, None).unwrap();
    for (epoch, auroc) in [(1, 0.61), (2, 0.74), (3, 0.71)] {
        let metrics = json!({
            "train_loss": 1.0 / epoch as f64, "val_loss": 1.2 / epoch as f64,
            "train_accuracy": 0.5 + 0.1 * epoch as f64, "val_accuracy": 0.45 + 0.1 * epoch as f64,
            "val_mean_auroc": auroc, "lr": 0.001 / epoch as f64, "seconds": 12.5,
            "val_per_label": per_label(auroc),
        });
        let best = (epoch == 2).then_some((2, "val_mean_auroc", 0.74));
        store.record_epoch(&done, epoch, &metrics, best).unwrap();
        store.append_event(&done, "epoch", &json!({"epoch": epoch})).unwrap();
    }
    store.set_status(&done, RunStatus::Done, None).unwrap();

    let other_config = json!({"model": "densenet-121", "lr": 0.01, "batch_size": 32});
    let script = store
        .create_run(&NewRun {
            name: "<script>alert(1)</script>",
            config: &other_config,
            dataset: "nih",
            model: "densenet-121",
            image_size: 224,
            epochs_planned: 10,
            tags: &["<b>x</b>".into()],
        })
        .unwrap();
    store.set_status(&script, RunStatus::Running, None).unwrap();
    store
        .record_epoch(
            &script,
            1,
            &json!({"val_loss": 0.9, "val_mean_auroc": 0.66, "val_per_label": per_label(0.9)}),
            None,
        )
        .unwrap();

    let jobs = Arc::new(FakeJobs {
        store: store.clone(),
        submitted: Mutex::new(Vec::new()),
    });
    Fixture {
        app: setup.jobs(jobs.clone()).build(),
        jobs,
        done,
        script,
    }
}

#[tokio::test]
async fn runs_page_lists_runs_escaped_with_security_headers() {
    let f = fixture();
    let page = f.app.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type().starts_with("text/html"), "{}", page.content_type());
    assert!(page.text().contains("baseline"));
    assert!(page.text().contains("synthetic demo"), "demo runs are marked");
    assert!(page.text().contains("0.7400"), "best mean AUROC of the best epoch");
    assert!(
        page.text().contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the name is shown, escaped"
    );
    assert!(!page.text().contains("<script>alert"), "no injected script");
    assert!(!page.text().contains("<b>x</b>"), "tags are escaped too");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    assert!(
        page.text().contains(&format!("value=\"{}\"", f.done)),
        "compare checkbox per run"
    );
}

#[tokio::test]
async fn runs_page_filters_and_sorts() {
    let f = fixture();
    let page = f.app.get("/?status=done").await;
    assert!(page.text().contains("baseline") && !page.text().contains("alert(1)"));
    let page = f.app.get("/?q=DENSENET").await;
    assert!(!page.text().contains(">baseline<") && page.text().contains("alert(1)"));
    let page = f.app.get("/?sort=auroc&dir=desc").await;
    let (first, second) = (
        page.text().find("baseline").unwrap(),
        page.text().find("alert(1)").unwrap(),
    );
    assert!(first < second, "0.74 sorts above 0.66");
    let page = f.app.get("/?sort=auroc&dir=asc").await;
    assert!(page.text().find("alert(1)").unwrap() < page.text().find("baseline").unwrap());
    let bad = f.app.get("/?sort=colour").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"]
        .as_str()
        .unwrap()
        .contains("cannot sort by 'colour'"));
}

#[tokio::test]
async fn run_page_shows_epochs_labels_and_events() {
    let f = fixture();
    let page = f.app.get(&format!("/runs/{}", f.done)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("Per label, epoch 2"), "the best epoch by default");
    assert!(page.text().contains("Effusion") && page.text().contains("812"));
    assert!(page.text().contains(&format!("/runs/{}/charts/loss.svg", f.done)));
    // Every label's 2×2 in one figure, and one label's at 0.5 chosen from a list of all.
    assert!(page.text().contains("/charts/confusion.svg?epoch=2\""), "the grid");
    assert!(page.text().contains("confusion.svg?epoch=2&#38;label=Effusion"));
    assert!(page.text().contains("<option>No Finding</option>"));
    assert!(page.text().contains("class=\"best\""), "best epoch row marked");
    assert!(page.text().contains("/static/live.js"));
    let page = f.app.get(&format!("/runs/{}?epoch=3", f.done)).await;
    assert!(page.text().contains("Per label, epoch 3"));
    let page = f.app.get(&format!("/runs/{}", f.script)).await;
    assert!(!page.text().contains("<script>alert"));
    assert!(page.text().contains("<progress"));
}

#[tokio::test]
async fn unknown_runs_are_404_everywhere() {
    let f = fixture();
    for uri in [
        "/runs/nope",
        "/runs/nope/charts/loss.svg",
        "/runs/nope/events",
        "/api/runs/nope",
        "/api/runs/nope/metrics.csv",
        "/compare?runs=nope",
        "/compare/charts/val_loss.svg?runs=nope",
    ] {
        let reply = f.app.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            reply.json()["error"].as_str().unwrap().contains("'nope'"),
            "{uri}: {}",
            reply.text()
        );
    }
    let reply = f.app.get("/no/such/page").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn run_charts_are_svg() {
    let f = fixture();
    let chart = f
        .app
        .get(&format!("/runs/{}/charts/loss.svg?smooth=0.6&log=1", f.done))
        .await;
    assert_eq!(chart.status, StatusCode::OK);
    assert_eq!(chart.content_type(), "image/svg+xml");
    assert!(chart.text().starts_with("<svg") && chart.text().contains("validation"));
    for name in ["accuracy", "auroc", "lr", "seconds", "per_label_auroc"] {
        let chart = f.app.get(&format!("/runs/{}/charts/{name}.svg", f.done)).await;
        assert_eq!(chart.status, StatusCode::OK, "{name}: {}", chart.text());
    }
    let confusion = f
        .app
        .get(&format!("/runs/{}/charts/confusion.svg?label=Effusion&epoch=1", f.done))
        .await;
    assert_eq!(confusion.status, StatusCode::OK);
    assert!(confusion.text().contains("812") && confusion.text().contains("Effusion at 0.5 (epoch 1)"));
    for (uri, status) in [
        (format!("/runs/{}/charts/colour.svg", f.done), StatusCode::NOT_FOUND),
        (format!("/runs/{}/charts/loss.gif", f.done), StatusCode::NOT_FOUND),
        (format!("/runs/{}/charts/loss.png", f.done), StatusCode::OK),
        (
            format!("/runs/{}/charts/confusion.svg?label=Nope", f.done),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/runs/{}/charts/loss.svg?smooth=2", f.done),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/runs/{}/charts/loss.svg?smooth=abc", f.done),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(f.app.get(&uri).await.status, status, "{uri}");
    }
}

#[tokio::test]
async fn compare_page_and_charts() {
    let f = fixture();
    let page = f.app.get(&format!("/compare?runs={},{}", f.done, f.script)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("baseline") && page.text().contains("&#60;script&#62;"));
    assert!(page.text().contains("densenet-121") && page.text().contains("class=\"differs\""));
    assert!(page.text().contains("0.7400 ★"), "best mean AUROC marked");
    assert!(page.text().contains("0.9000 ★"), "best Effusion AUROC marked");
    // Checkbox form submissions repeat `run`; "only differences" hides equal parameters.
    let page = f
        .app
        .get(&format!("/compare?run={}&run={}&diff=1", f.done, f.script))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text().contains("batch_size") && page.text().contains("1 identical hidden"));
    let chart = f
        .app
        .get(&format!("/compare/charts/val_loss.svg?runs={},{}", f.done, f.script))
        .await;
    assert_eq!(chart.status, StatusCode::OK);
    assert!(
        chart.text().contains("baseline") && chart.text().contains("&lt;script&gt;"),
        "legend names, escaped"
    );
    let bars = f
        .app
        .get(&format!(
            "/compare/charts/per_label_auroc.svg?runs={},{}",
            f.done, f.script
        ))
        .await;
    assert!(bars.text().contains("No Finding"));
    assert_eq!(f.app.get("/compare").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_reads_runs_and_metrics() {
    let f = fixture();
    let list = f.app.get("/api/runs").await.json();
    assert_eq!(list["runs"].as_array().unwrap().len(), 2);
    let detail = f.app.get(&format!("/api/runs/{}", f.done)).await;
    assert_eq!(detail.status, StatusCode::OK);
    let detail = detail.json();
    assert_eq!(detail["status"], "done");
    assert_eq!(detail["config"]["model"], "resnet-18");
    assert_eq!(detail["epochs"].as_array().unwrap().len(), 3);
    assert_eq!(detail["epochs"][1]["epoch"], 2);
    assert!(detail["epochs"][1]["metrics"].get("val_per_label").is_none());
    assert_eq!(detail["per_label_epoch"], 2);
    assert_eq!(detail["per_label"][0]["label"], "Effusion");
    assert_eq!(detail["per_label"][0]["fn"], 17);

    let csv = f.app.get(&format!("/api/runs/{}/metrics.csv", f.done)).await;
    assert!(csv.content_type().starts_with("text/csv"));
    let mut lines = csv.text().lines();
    assert_eq!(
        lines.next().unwrap(),
        "epoch,committed_at,train_loss,val_loss,train_accuracy,val_accuracy,val_mean_auroc,lr,seconds"
    );
    assert!(lines.next().unwrap().starts_with("1,"));
    assert_eq!(csv.text().lines().count(), 4);
}

#[tokio::test]
async fn api_lists_runs_a_page_at_a_time() {
    let f = fixture();
    for i in 0..5 {
        f.app
            .store()
            .create_run(&NewRun {
                name: &format!("extra {i}"),
                config: &json!({}),
                dataset: "demo",
                model: "simple-cnn",
                image_size: 64,
                epochs_planned: 1,
                tags: &[],
            })
            .unwrap();
    }
    let everything = f.app.get("/api/runs").await.json();
    assert_eq!(everything["total"], 7);
    assert_eq!(everything["next"], Value::Null, "7 runs fit the default page");
    let newest_first: Vec<Value> = everything["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(newest_first.len(), 7);

    // Following `next` visits every run once, in the same order.
    let mut seen = Vec::new();
    let mut next = Some("/api/runs?limit=3".to_string());
    let mut pages = 0;
    while let Some(uri) = next {
        let page = f.app.get(&uri).await.json();
        assert_eq!((page["total"].clone(), page["limit"].clone()), (json!(7), json!(3)));
        seen.extend(page["runs"].as_array().unwrap().iter().map(|r| r["id"].clone()));
        next = page["next"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!((pages, seen), (3, newest_first));

    // The best epoch's numbers ride along with each run.
    let done = everything["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == f.done.as_str())
        .unwrap();
    assert_eq!(
        (done["best_val_mean_auroc"].as_f64(), done["best_epoch"].as_u64()),
        (Some(0.74), Some(2))
    );
    assert!((done["best_val_accuracy"].as_f64().unwrap() - 0.65).abs() < 1e-12);
    assert_eq!(done["config"]["model"], "resnet-18");

    let past_the_end = f.app.get("/api/runs?offset=50").await.json();
    assert_eq!(past_the_end["runs"], json!([]));
    assert_eq!(past_the_end["next"], Value::Null);
    for bad in ["limit=0", "limit=1001", "limit=ten", "offset=-1", "offset=1e3"] {
        let reply = f.app.get(&format!("/api/runs?{bad}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        let error = reply.json()["error"].as_str().unwrap().to_string();
        let field = bad.split('=').next().unwrap();
        assert!(
            error.starts_with(&format!("{field} must be a whole number from")),
            "{bad}: {error}"
        );
    }
}

#[tokio::test]
async fn api_submits_through_job_control() {
    let f = fixture();
    let created = f
        .app
        .post("/api/runs", JSON, r#"{"model": "resnet-18", "epochs": 2}"#)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(created.headers[header::LOCATION], format!("/runs/{id}").as_str());
    assert_eq!(f.jobs.submitted.lock().unwrap().len(), 1);

    let invalid = f.app.post("/api/runs", JSON, r#"{"epochs": 0}"#).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = invalid.json()["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["model", "epochs"]);

    let malformed = f.app.post("/api/runs", JSON, r#"{"model": "#).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(
        malformed.json()["error"].is_string(),
        "JSON error body: {}",
        malformed.text()
    );
    let not_object = f.app.post("/api/runs", JSON, "[1, 2]").await;
    assert_eq!(not_object.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.jobs.submitted.lock().unwrap().len(), 1, "nothing else was submitted");
}

#[tokio::test]
async fn api_cancels_resumes_and_deletes() {
    let f = fixture();
    let cancel = f
        .app
        .send_empty(Method::POST, &format!("/api/runs/{}/cancel", f.script))
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);
    let refused = f
        .app
        .send_empty(Method::POST, &format!("/api/runs/{}/cancel", f.done))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let resume = f
        .app
        .send_empty(Method::POST, &format!("/api/runs/{}/resume", f.done))
        .await;
    assert_eq!(resume.status, StatusCode::ACCEPTED);
    assert_eq!(
        f.app.send_empty(Method::POST, "/api/runs/nope/cancel").await.status,
        StatusCode::NOT_FOUND
    );

    let running = f
        .app
        .send_empty(Method::DELETE, &format!("/api/runs/{}", f.script))
        .await;
    assert_eq!(running.status, StatusCode::CONFLICT, "a running run is cancelled first");
    let deleted = f.app.send_empty(Method::DELETE, &format!("/api/runs/{}", f.done)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(f.app.store().run(&f.done).unwrap().is_none());
    assert_eq!(
        f.app
            .send_empty(Method::DELETE, &format!("/api/runs/{}", f.done))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn static_assets_are_served() {
    let f = fixture();
    let css = f.app.get("/static/style.css").await;
    assert!(css.content_type().starts_with("text/css") && css.text().contains(".badge"));
    let js = f.app.get("/static/live.js").await;
    assert!(js.content_type().starts_with("text/javascript") && js.text().contains("EventSource"));
}

#[tokio::test]
async fn event_stream_resumes_after_last_event_id_then_goes_live() {
    let f = fixture();
    let server = f.app.serve().await;
    let address = server.address;

    let stored = f.app.store().events_after(&f.done, 0).unwrap();
    assert_eq!(stored.len(), 3);
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /runs/{}/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\nLast-Event-ID: {}\r\n\r\n",
        f.done, stored[0].seq
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let backlog = read_events(&mut stream, 2).await;
    assert_eq!(
        backlog.iter().map(|e| e.0).collect::<Vec<_>>(),
        [stored[1].seq, stored[2].seq],
        "only events after Last-Event-ID"
    );
    assert_eq!(backlog[0].1, "epoch");
    assert_eq!(backlog[0].2["epoch"], 2);

    // A live event of another run is not delivered; one of this run is, with its store seq as id.
    f.app
        .emit(&f.script, "progress", json!({"epoch": 2, "step": 1, "steps": 10}));
    let done_seq = f.app.emit(&f.done, "done", json!({"status": "done"}));
    // The other run's progress event was sent first: had it been delivered, it would come first.
    let live = read_events(&mut stream, 1).await;
    assert_eq!(live, [(done_seq, "done".to_string(), json!({"status": "done"}))]);
    drop(server);
}

#[tokio::test]
async fn a_lagging_stream_is_resynced_from_the_store() {
    let f = fixture();
    let server = f.app.serve().await;
    let address = server.address;
    let last = f.app.store().events_after(&f.done, 0).unwrap().last().unwrap().seq;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /runs/{}/events?after={last} HTTP/1.1\r\nHost: {address}\r\n\r\n",
        f.done
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Wait for the response head, so the handler has subscribed before we flood the channel.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // Far more than the channel holds, sent without waiting: the sender never blocks.
    let total = cxr8::web::LIVE_EVENT_BUFFER + 200;
    let mut seqs = Vec::new();
    for i in 0..total {
        seqs.push(f.app.emit(&f.done, "progress", json!({"epoch": 1, "step": i})));
    }
    let received = read_events(&mut stream, total).await;
    assert_eq!(
        received.iter().map(|e| e.0).collect::<Vec<_>>(),
        seqs,
        "every event once, in order"
    );
    drop(server);
}

#[tokio::test]
async fn held_out_test_results_show_on_the_run_page_the_api_and_the_list() {
    let app = TestApp::new();
    let id = queued_run(&app, "scored");
    let page = app.get(&format!("/runs/{id}")).await;
    assert!(page.text().contains("Test (held-out)") && page.text().contains("Not scored yet"));

    let report = json!({
        "images": 240, "epoch": 3, "mean_auroc": 0.8123, "mean_auroc_ci": [0.7712, 0.8491],
        "auroc_defined": 2, "map": 0.4321,
        "labels": {
            "Effusion": {"support": 31, "auroc": 0.9012, "auroc_ci": [0.8554, 0.9401], "ap": 0.61,
                         "threshold": 0.37, "f1": 0.55, "sensitivity": 0.71, "specificity": 0.88},
            "Hernia": {"support": 0, "auroc": null, "auroc_ci": null, "ap": null,
                       "threshold": 0.5, "f1": null, "sensitivity": null, "specificity": 1.0}
        },
        "accuracy": null, "balanced_accuracy": null, "confusion": null, "exact_match": 0.52,
        "bootstrap": {"resamples": 1000, "level": 0.95, "seed": 7, "unit": "patient", "units": 180},
        "note": null
    });
    app.store()
        .set_test_with_event(&id, &report, "test", &json!({"type": "test"}))
        .unwrap();

    let page = app.get(&format!("/runs/{id}")).await;
    let text = page.text();
    for expected in [
        "Mean AUROC 0.8123 (95 % CI 0.7712–0.8491), mAP 0.4321 on 240 test images, best epoch 3",
        "0.8554–0.9401",
        "Exact-match accuracy",
        "1000-resample percentile bootstrap over 180 patients (seed 7)",
        "tuned (max F1) on the validation split",
    ] {
        assert!(text.contains(expected), "missing {expected:?}");
    }
    // An undefined AUROC (no positives in the test split) is a visible n/a, not a blank.
    let hernia = &text[text.find("<td>Hernia</td>").unwrap()..];
    assert!(hernia[..hernia.find("</tr>").unwrap()].contains("n/a"));

    let detail = app.get(&format!("/api/runs/{id}")).await.json();
    assert_eq!(detail["test"]["mean_auroc_ci"], json!([0.7712, 0.8491]));
    assert_eq!(detail["test"]["labels"]["Effusion"]["threshold"], 0.37);
    assert_eq!(detail["test_mean_auroc"], 0.8123);
    let list = app.get("/api/runs").await.json();
    let listed = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["test_mean_auroc"], 0.8123);
    let runs = app.get("/").await;
    assert!(runs.text().contains("Test mean AUROC") && runs.text().contains("0.8123"));
}

/// A queued one-epoch resnet-18 run on the demo set.
fn queued_run(app: &TestApp, name: &str) -> String {
    let config = json!({"model": "resnet-18"});
    app.store()
        .create_run(&NewRun {
            name,
            config: &config,
            dataset: "demo",
            model: "resnet-18",
            image_size: 64,
            epochs_planned: 1,
            tags: &[],
        })
        .unwrap()
}

/// Records a finished one-epoch run with these validation metrics (its best epoch).
fn finished_run(app: &TestApp, name: &str, metrics: Value) -> String {
    let id = queued_run(app, name);
    let auroc = metrics["val_mean_auroc"].as_f64().unwrap();
    app.store()
        .record_epoch(&id, 1, &metrics, Some((1, "val_mean_auroc", auroc)))
        .unwrap();
    app.store().set_status(&id, RunStatus::Done, None).unwrap();
    id
}

#[tokio::test]
async fn each_run_leads_with_the_number_that_fits_its_task_and_names_every_accuracy() {
    let app = TestApp::new();
    // A multi-label run whose per-label accuracy (0.93) is what predicting nothing would score.
    let multi = finished_run(
        &app,
        "multi",
        json!({"val_mean_auroc": 0.7111, "val_accuracy": 0.93, "val_accuracy_per_label": 0.93,
               "val_subset_accuracy": 0.41, "train_subset_accuracy": 0.45, "val_top1_accuracy": 0.5}),
    );
    let single = finished_run(
        &app,
        "single",
        json!({"val_mean_auroc": 0.8222, "val_accuracy": 0.77, "val_top1_accuracy": 0.77,
               "val_balanced_accuracy": 0.6333, "train_balanced_accuracy": 0.7, "val_subset_accuracy": 0.7}),
    );

    let list = app.get("/").await.text().to_string();
    assert!(list.contains("Val balanced accuracy") && !list.contains("Val accuracy<"));
    let row = |id: &str| {
        let start = list.find(&format!(r#"<tr data-run="{id}">"#)).unwrap();
        list[start..start + list[start..].find("</tr>").unwrap()].to_string()
    };
    assert!(
        row(&multi).contains(r#"class="num headline">0.7111"#),
        "{}",
        row(&multi)
    );
    assert!(row(&multi).contains("multi-label") && !row(&multi).contains("0.93"));
    assert!(
        row(&single).contains(r#"class="num headline">0.6333"#),
        "{}",
        row(&single)
    );
    // Sorting by the column sorts by balanced accuracy; the old key still works.
    for sort in ["balanced", "accuracy"] {
        let sorted = app.get(&format!("/?sort={sort}&dir=desc")).await;
        assert_eq!(sorted.status, StatusCode::OK, "{sort}");
        let text = sorted.text();
        assert!(text.find(&single).unwrap() < text.find(&multi).unwrap());
    }

    let api = app.get("/api/runs").await.json();
    let listed = |id: &str| {
        api["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        listed(&multi)["headline"],
        json!({"metric": "val_mean_auroc", "value": 0.7111})
    );
    assert_eq!(
        listed(&single)["headline"],
        json!({"metric": "val_balanced_accuracy", "value": 0.6333})
    );
    let detail = app.get(&format!("/api/runs/{single}")).await.json();
    assert_eq!(detail["headline"]["metric"], "val_balanced_accuracy");
    assert_eq!(detail["best_val_balanced_accuracy"], 0.6333);

    // The run page's accuracy chart names its accuracies, by task.
    let page = app.get(&format!("/runs/{multi}")).await.text().to_string();
    assert!(page.contains("Exact-match accuracy (every label right at 0.5)"));
    let chart = app
        .get(&format!("/runs/{multi}/charts/accuracy.svg"))
        .await
        .text()
        .to_string();
    assert!(chart.contains("validation exact-match") && !chart.contains("balanced"));
    let chart = app
        .get(&format!("/runs/{single}/charts/accuracy.svg"))
        .await
        .text()
        .to_string();
    assert!(chart.contains("validation balanced") && chart.contains("validation top-1"));

    // Compare: every accuracy row says which; the headline leads when all runs are single-label.
    let both = app
        .get(&format!("/compare?runs={multi},{single}"))
        .await
        .text()
        .to_string();
    for row in [
        "best validation mean AUROC",
        "best validation balanced accuracy",
        "best validation top-1 accuracy",
        "best validation exact-match accuracy",
    ] {
        assert!(both.contains(row), "missing {row}");
    }
    assert!(!both.contains("best validation accuracy"));
    assert!(both.find("best validation mean AUROC").unwrap() < both.find("best validation balanced accuracy").unwrap());
    let singles = app.get(&format!("/compare?runs={single}")).await.text().to_string();
    assert!(
        singles.find("best validation balanced accuracy").unwrap()
            < singles.find("best validation mean AUROC").unwrap()
    );
    let multis = app.get(&format!("/compare?runs={multi}")).await.text().to_string();
    assert!(!multis.contains("top-1") && !multis.contains("balanced accuracy"));
}

#[tokio::test]
async fn a_run_started_from_weights_says_so_in_its_event_log() {
    use cxr8::service::runs::Recorder;
    use cxr8::train::EventSink;
    let app = TestApp::new();
    let config = cxr8::train::TrainConfig::default();
    let id = queued_run(&app, "tuned");
    let mut recorder = Recorder::new(app.store().clone(), &id, &config, None);
    recorder.emit(cxr8::train::TrainEvent::WeightsLoaded {
        path: "/w/resnet18.pth".into(),
        tensors: 100,
        head_kept: false,
        head_note: Some("the file's 'fc.weight' has shape [1000, 512], this model's head needs [14, 512]".into()),
        stem_folded: true,
    });
    let page = app.get(&format!("/runs/{id}")).await.text().to_string();
    assert!(
        page.contains(
            "started from /w/resnet18.pth: 100 tensors, RGB stem folded to gray; classifier head re-initialised"
        ),
        "{page}"
    );
    assert!(page.contains("[1000, 512]"));
}

#[tokio::test]
async fn the_epochs_table_has_human_column_names_and_no_internals() {
    let app = TestApp::new();
    let id = finished_run(
        &app,
        "named",
        json!({"epoch": 1, "val_mean_auroc": 0.7, "val_auroc_defined": 13, "train_ap_defined": 14,
               "val_map": 0.3, "val_loss": 0.4, "val_accuracy": 0.92, "val_subset_accuracy": 0.4,
               "val_rows": 8, "val_top1_rows": 8, "val_non_finite_outputs": 0, "val_macro_f1_tuned": 0.5}),
    );
    let page = app.get(&format!("/runs/{id}")).await.text().to_string();
    let start = page.find(r#"<table class="metrics" id="epochs">"#).unwrap();
    let header = &page[start..start + page[start..].find("</thead>").unwrap()];
    for name in [
        "Validation loss",
        "Validation mean AUROC",
        "Validation mAP",
        "Validation exact-match accuracy",
        "Validation macro F1 (tuned thresholds)",
    ] {
        assert!(header.contains(&format!("<th>{name}</th>")), "missing {name}: {header}");
    }
    for internal in ["rows", "non finite"] {
        assert!(!header.contains(internal), "{internal}: {header}");
    }
    assert_eq!(
        header.matches("<th>epoch</th>").count(),
        1,
        "one epoch column: {header}"
    );
    assert!(
        !header.contains("defined") && !header.contains("(top-1 or per-label)"),
        "{header}"
    );
}

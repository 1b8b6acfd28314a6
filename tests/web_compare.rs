//! The live compare page: `/compare/events` multiplexes several runs' events over one SSE stream
//! (over a real loopback socket), and the page takes up to 10 runs.

use axum::http::StatusCode;
use cxr8::store::RunStatus;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::TestApp;

/// A running run with two stored epochs (so its charts draw a line).
fn run(app: &TestApp, name: &str) -> String {
    let store = app.store();
    let new = cxr8::store::NewRun {
        name,
        config: &json!({"model": "simple-cnn", "lr": 0.001}),
        dataset: "demo",
        model: "simple-cnn",
        image_size: 64,
        epochs_planned: 5,
        tags: &[],
    };
    let id = store.create_run(&new).unwrap();
    store.set_status(&id, RunStatus::Running, None).unwrap();
    for epoch in 1..=2 {
        let metrics = json!({"val_loss": 1.0 - 0.1 * epoch as f64, "val_mean_auroc": 0.6});
        store.record_epoch(&id, epoch, &metrics, None).unwrap();
    }
    id
}

/// One received event: (id, event name, run id, payload).
type Received = (i64, String, String, Value);

/// Opens `/compare/events?runs=...` and waits for the response head (so the handler has
/// subscribed to the broadcast before the test sends anything).
async fn open(address: std::net::SocketAddr, runs: &[&str], last_event_id: Option<i64>) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /compare/events?runs={} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n{resume}\r\n",
        runs.join(",")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed before its head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    stream
}

/// Reads whole SSE frames until `count` events have arrived; each names its run.
async fn read_events(stream: &mut TcpStream, count: usize) -> Vec<Received> {
    crate::util::read_events(stream, count)
        .await
        .into_iter()
        .map(|(id, event, data)| {
            let run = data["run_id"].as_str().unwrap().to_string();
            (id, event, run, data["payload"].clone())
        })
        .collect()
}

fn ids(events: &[Received]) -> Vec<i64> {
    events.iter().map(|e| e.0).collect()
}

#[tokio::test]
async fn one_stream_carries_both_runs_and_not_a_third() {
    let f = TestApp::new();
    let (a, b, c) = (run(&f, "a"), run(&f, "b"), run(&f, "c"));
    let stored = [
        f.store_event(&a, "status", json!({"status": "running"})),
        f.store_event(&c, "status", json!({"status": "running"})),
        f.store_event(&b, "status", json!({"status": "running"})),
    ];
    let server = f.serve().await;
    let address = server.address;
    let mut stream = open(address, &[&a, &b], None).await;

    let backlog = read_events(&mut stream, 2).await;
    assert_eq!(
        ids(&backlog),
        [stored[0].seq, stored[2].seq],
        "stored events of a and b only"
    );
    assert_eq!((backlog[0].2.as_str(), backlog[1].2.as_str()), (a.as_str(), b.as_str()));
    assert_eq!(backlog[0].1, "status");
    assert_eq!(backlog[0].3, json!({"status": "running"}));

    // Live: c's event goes first; had it been delivered it would come first.
    f.emit(&c, "epoch", json!({"epoch": 2}));
    let from_b = f.emit(&b, "epoch", json!({"epoch": 2}));
    let from_a = f.emit(&a, "done", json!({"status": "done"}));
    let live = read_events(&mut stream, 2).await;
    assert_eq!(
        live,
        [
            (from_b, "epoch".to_string(), b.clone(), json!({"epoch": 2})),
            (from_a, "done".to_string(), a.clone(), json!({"status": "done"})),
        ]
    );
    drop(server);
}

#[tokio::test]
async fn a_reconnect_resumes_after_last_event_id_without_gaps_or_duplicates() {
    let f = TestApp::new();
    let (a, b) = (run(&f, "a"), run(&f, "b"));
    let server = f.serve().await;
    let address = server.address;
    let mut stream = open(address, &[&a, &b], None).await;
    let first: Vec<i64> = (0..4)
        .map(|i| f.emit(if i % 2 == 0 { &a } else { &b }, "progress", json!({"step": i})))
        .collect();
    let received = read_events(&mut stream, 4).await;
    assert_eq!(ids(&received), first);
    drop(stream);

    // Written while the browser was away (stored, nobody listening), then live after it returns.
    let missed: Vec<i64> = (4..7)
        .map(|i| {
            f.store_event(if i % 2 == 0 { &a } else { &b }, "progress", json!({"step": i}))
                .seq
        })
        .collect();
    let mut stream = open(address, &[&a, &b], Some(*first.last().unwrap())).await;
    let later = f.emit(&b, "done", json!({"status": "done"}));
    let resumed = read_events(&mut stream, 4).await;
    let mut expected = missed.clone();
    expected.push(later);
    assert_eq!(ids(&resumed), expected, "every event after the last id once, in order");
    assert_eq!(resumed[3].3["status"], "done");
    drop(server);
}

#[tokio::test]
async fn an_id_from_beyond_the_store_replays_everything_instead_of_going_silent() {
    // A browser kept a Last-Event-ID from a data folder that has since been replaced.
    let f = TestApp::new();
    let a = run(&f, "a");
    let stored: Vec<i64> = (0..3)
        .map(|i| f.store_event(&a, "progress", json!({"step": i})).seq)
        .collect();
    let server = f.serve().await;
    let address = server.address;
    let mut stream = open(address, &[&a], Some(1_000_000_000)).await;
    let received = read_events(&mut stream, 3).await;
    assert_eq!(ids(&received), stored);
    drop(server);
}

#[tokio::test]
async fn events_broadcast_out_of_order_arrive_in_order_once() {
    // Two writers (say, a training run and a cancelled queued run) store their events in one
    // order and broadcast them in the other: ids must still only increase, nothing lost.
    let f = TestApp::new();
    let (a, b) = (run(&f, "a"), run(&f, "b"));
    let server = f.serve().await;
    let address = server.address;
    let mut stream = open(address, &[&a, &b], None).await;
    let first = f.store_event(&a, "epoch", json!({"epoch": 2}));
    let second = f.store_event(&b, "done", json!({"status": "cancelled"}));
    f.state.events.send(second.clone()).unwrap();
    f.state.events.send(first.clone()).unwrap();
    let after = f.emit(&a, "epoch", json!({"epoch": 3}));
    let received = read_events(&mut stream, 3).await;
    assert_eq!(ids(&received), [first.seq, second.seq, after]);
    drop(server);
}

#[tokio::test]
async fn unknown_runs_and_too_many_runs_are_refused() {
    let f = TestApp::new();
    let a = run(&f, "a");
    let reply = f.get(&format!("/compare/events?runs={a},nope")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert!(reply.text().contains("'nope'"), "{}", reply.text());

    let eleven: Vec<String> = (0..11).map(|i| format!("r{i}")).collect();
    let reply = f.get(&format!("/compare/events?runs={}", eleven.join(","))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.text().contains("at most 10"), "{}", reply.text());
    let reply = f.get("/compare/events").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let reply = f.get(&format!("/compare/events?runs={a}&after=yesterday")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.text().contains("event number"), "{}", reply.text());
}

#[tokio::test]
async fn ten_runs_compare_with_ten_colours_and_the_page_goes_live_only_while_one_trains() {
    let f = TestApp::new();
    let runs: Vec<String> = (0..10).map(|i| run(&f, &format!("run {i}"))).collect();
    let newest = f.store_event(&runs[0], "status", json!({"status": "running"})).seq;
    let reply = f.get(&format!("/compare?runs={}", runs.join(","))).await;
    let page = reply.text();
    assert_eq!(reply.status, StatusCode::OK, "{page}");
    assert!(page.contains("Compare 10 runs"));
    assert!(page.contains("swatch c9"), "the tenth run has its own colour");
    assert!(page.contains("/static/compare.js"));
    assert!(page.contains(&format!("data-runs=\"{}\"", runs.join(","))), "{page}");
    assert!(
        page.contains(&format!("data-after=\"{newest}\"")),
        "the stream starts after the page"
    );
    assert!(page.contains("data-live=\"true\""));
    assert!(page.contains(&format!("data-status-of=\"{}\"", runs[9])));
    let reply = f
        .get(&format!("/compare/charts/val_loss.svg?runs={}", runs.join(",")))
        .await;
    let chart = reply.text();
    assert_eq!(reply.status, StatusCode::OK, "{chart}");
    // The tenth colour (grey) draws the tenth run's line.
    assert!(chart.contains("#999999"), "tenth series colour in the chart");

    for run in &runs {
        f.store().set_status(run, RunStatus::Done, None).unwrap();
    }
    let page = f.get(&format!("/compare?runs={}", runs.join(","))).await;
    assert!(page.text().contains("data-live=\"false\""), "finished runs: no stream");

    let script = f.get("/static/compare.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text().contains("/compare/events") && script.text().contains("EventSource"));
}

#[tokio::test]
async fn the_runs_list_pages_a_big_store() {
    // Not the compare page, but the same scale work: 10,000 runs must not make one huge page.
    let f = TestApp::new();
    let runs = (0..205).map(|i| cxr8::store::scalars::FinishedRun {
        id: format!("bulk-{i:03}"),
        name: format!("bulk run {i}"),
        config: json!({"model": "simple-cnn"}),
        dataset: "demo".into(),
        model: "simple-cnn".into(),
        image_size: 64,
        tags: vec![],
        epochs: vec![json!({"epoch": 1, "val_mean_auroc": 0.5 + i as f64 / 1000.0})],
        best: Some((1, "val_mean_auroc".into(), 0.5 + i as f64 / 1000.0)),
    });
    f.store().insert_finished_runs(runs).unwrap();
    let reply = f.get("/?sort=auroc&dir=desc").await;
    let first = reply.text();
    assert_eq!(reply.status, StatusCode::OK, "{first}");
    assert!(
        first.contains("205 of 205") && first.contains("rows 1–200 of 205"),
        "{first}"
    );
    assert_eq!(first.matches("<tr data-run=").count(), 200);
    assert!(first.contains(">bulk run 204<"), "highest AUROC first");
    assert!(
        first.contains("sort=auroc&#38;dir=desc&#38;page=2"),
        "next link keeps the order"
    );
    let second = f.get("/?sort=auroc&dir=desc&page=2").await;
    let second = second.text();
    assert_eq!(second.matches("<tr data-run=").count(), 5);
    assert!(second.contains(">bulk run 0<") && second.contains("rows 201–205 of 205"));
    let past = f.get("/?sort=auroc&dir=desc&page=9").await;
    assert!(past.text().contains("rows 201–205"), "past the end: the last page");
    let reply = f.get("/?page=0").await;
    let body = reply.text();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(body.contains("page must be a whole number"), "{body}");
    let filtered = f.get("/?q=bulk%20run%2019").await;
    let filtered = filtered.text();
    assert!(
        filtered.contains("11 of 205") && !filtered.contains("rows "),
        "one page: no pager"
    );
}

#[tokio::test]
async fn compare_shows_held_out_test_results_side_by_side_with_the_best_marked() {
    let app = TestApp::new();
    let (a, b, unscored) = (run(&app, "a"), run(&app, "b"), run(&app, "unscored"));
    for (id, mean, effusion) in [(&a, 0.71, 0.80), (&b, 0.83, 0.77)] {
        let report = json!({
            "images": 120, "mean_auroc": mean, "mean_auroc_ci": [mean - 0.05, mean + 0.04], "map": 0.3,
            "labels": {"Effusion": {"auroc": effusion}, "Mass": {"auroc": null}},
            "curves": {"Effusion": {"auroc": effusion, "ap": 0.5,
                "roc": [[0.0, 0.0], [0.2, 0.7], [1.0, 1.0]], "pr": [[0.5, 0.9], [1.0, 0.4]]}},
        });
        app.store()
            .set_test_with_event(id, &report, "test", &json!({}))
            .unwrap();
    }
    let page = app.get(&format!("/compare?runs={a},{b},{unscored}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    let section = &text[text.find("id=\"test-results\"").expect("a test section")..];
    let section = &section[..section.find("</table>").unwrap()];
    let row = |title: &str| {
        let start = section
            .find(&format!("<th>{title}</th>"))
            .unwrap_or_else(|| panic!("no row {title}"));
        let rest = &section[start..];
        rest[..rest.find("</tr>").unwrap()].to_string()
    };
    // b has the higher mean AUROC, a the higher Effusion AUROC; the unscored run shows dashes.
    let mean = row("test mean AUROC");
    assert!(mean.contains("0.8300 ★") && !mean.contains("0.7100 ★"), "{mean}");
    let effusion = row("test AUROC: Effusion");
    assert!(
        effusion.contains("0.8000 ★") && !effusion.contains("0.7700 ★"),
        "{effusion}"
    );
    assert!(row("test mean AUROC, 95 % CI").contains("0.7800–0.8700"));
    assert!(row("test images").contains("–"));
    // A label without positives in a test split is a visible n/a, never a silent gap.
    assert!(row("test AUROC: Mass").contains("n/a") || row("test AUROC: Mass").contains("–"));

    // The same label's test curves of every run, overlaid, each run's area in the legend.
    assert!(
        text.contains("/compare/charts/roc.svg?runs="),
        "curve charts on the page"
    );
    let roc = app
        .get(&format!(
            "/compare/charts/roc.svg?runs={a},{b},{unscored}&label=Effusion"
        ))
        .await;
    assert_eq!(roc.status, StatusCode::OK, "{}", roc.short());
    assert!(roc.text().contains("a (AUROC 0.800)") && roc.text().contains("b (AUROC 0.770)"));
    let pr = app
        .get(&format!("/compare/charts/pr.svg?runs={a},{b}&label=Effusion"))
        .await;
    assert!(pr.text().contains("a (AP 0.500)"));
    let none = app
        .get(&format!("/compare/charts/roc.svg?runs={a},{b}&label=Mass"))
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

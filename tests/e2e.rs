//! The dashboard end to end: the real `cxr8 serve` binary on a loopback port, a tiny run submitted
//! over the JSON API, followed over Server-Sent Events, resumed after a reconnect, and found intact
//! (or marked interrupted and resumable) after the server restarts.

use serde_json::{json, Value};

use crate::util::{tiny_demo, Deadline, Server, SseEvent};

/// A run small enough to train in seconds on two CPU cores (a quarter-width CNN, 100 images).
fn tiny_run(name: &str, epochs: u32) -> Value {
    json!({
        "name": name,
        "model": "simple-cnn",
        "width": 0.25,
        "image_size": 64,
        "epochs": epochs,
        "batch_size": 16,
        "max_images": 100,
        "device": "cpu",
        "learning_rate": 0.003,
        "seed": 5,
    })
}

fn epochs_of(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event == "epoch")
        .map(|e| {
            e.json()["epoch"]
                .as_u64()
                .expect("an epoch number in every epoch event")
        })
        .collect()
}

/// An epoch's metrics as the pages and API show them: without the event's `type` tag and the
/// per-label detail the run summary leaves out.
fn comparable(mut row: Value) -> Value {
    if let Some(map) = row.as_object_mut() {
        map.remove("type");
        map.remove("val_per_label");
    }
    row
}

/// JSON equality, exact: serde_json's `float_roundtrip` parser reads stored numbers back bit for
/// bit, so a payload re-read from the store equals the live one.
fn same_json(a: &Value, b: &Value) -> bool {
    a == b
}

/// The same events (ids, names, payloads) in the same order.
fn assert_same_events(got: &[&SseEvent], expected: &[&SseEvent], what: &str) {
    let names = |events: &[&SseEvent]| events.iter().map(|e| (e.seq(), e.event.clone())).collect::<Vec<_>>();
    assert_eq!(names(got), names(expected), "{what}");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            same_json(&g.json(), &e.json()),
            "{what}: event {} differs:\n{g:?}\n{e:?}",
            e.seq()
        );
    }
}

fn assert_ids_increase(events: &[SseEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].seq() < pair[1].seq(),
            "event ids must increase: {} then {}",
            pair[0].seq(),
            pair[1].seq()
        );
    }
}

#[test]
fn run_streams_live_resumes_its_stream_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);

    let response = server.post_json("/api/runs", &tiny_run("e2e tiny", 3));
    assert_eq!(response.status, 201, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();
    assert_eq!(response.header("location"), Some(format!("/runs/{id}").as_str()));

    let events = server.events(&id, None).until_done(Deadline::default_limit());
    assert_ids_increase(&events);
    assert_eq!(epochs_of(&events), [1, 2, 3], "every epoch exactly once, in order");
    let done = events.last().unwrap().json();
    assert_eq!(done["status"], "done", "{done}");
    assert!(
        events.iter().any(|e| e.event == "progress"),
        "batch progress is streamed"
    );
    let first_epoch = events.iter().position(|e| e.event == "epoch").unwrap();
    assert!(
        events[..first_epoch]
            .iter()
            .any(|e| e.event == "status" && e.json()["status"] == "running"),
        "a running status before the first epoch"
    );

    // The streamed epoch rows are exactly what the store serves.
    let detail = server.get_json(&format!("/api/runs/{id}"));
    assert_eq!(detail["status"], "done");
    assert_eq!(detail["epochs_done"], 3);
    let streamed: Vec<Value> = events
        .iter()
        .filter(|e| e.event == "epoch")
        .map(|e| comparable(e.json()))
        .collect();
    let stored: Vec<Value> = detail["epochs"]
        .as_array()
        .expect("epochs array")
        .iter()
        .map(|e| comparable(e["metrics"].clone()))
        .collect();
    assert_eq!(streamed.len(), stored.len());
    for (s, t) in streamed.iter().zip(&stored) {
        assert!(same_json(s, t), "streamed epoch differs from the stored one:\n{s}\n{t}");
    }
    for (i, epoch) in detail["epochs"].as_array().unwrap().iter().enumerate() {
        assert_eq!(epoch["epoch"], i + 1);
    }

    // A client that saw everything up to the middle epoch gets exactly the rest.
    let middle = events.iter().filter(|e| e.event == "epoch").nth(1).unwrap().seq();
    let rest = server.events(&id, Some(middle)).until_done(Deadline::default_limit());
    let expected: Vec<&SseEvent> = events.iter().filter(|e| e.seq() > middle).collect();
    assert_same_events(
        &rest.iter().collect::<Vec<_>>(),
        &expected,
        "no gap, no duplicate after a reconnect",
    );
    assert_eq!(epochs_of(&rest), [3]);

    // A restart on the same folders finds the run as it was.
    let csv = server.get(&format!("/api/runs/{id}/metrics.csv")).text();
    server.stop();
    let server = Server::start(&data, &ckpts);
    assert_eq!(
        server.get_json(&format!("/api/runs/{id}")),
        detail,
        "run intact after a restart"
    );
    assert_eq!(server.get(&format!("/api/runs/{id}/metrics.csv")).text(), csv);
    let again = server.events(&id, None).until_done(Deadline::default_limit());
    assert_same_events(
        &again.iter().collect::<Vec<_>>(),
        &events.iter().collect::<Vec<_>>(),
        "the stored event log survives a restart",
    );
}

#[test]
fn run_killed_mid_training_is_interrupted_and_resumes_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let id = server.submit(&tiny_run("e2e killed", 3));

    // Kill once epoch 1's checkpoint is written, while epoch 2 trains.
    let before = server
        .events(&id, None)
        .until(Deadline::default_limit(), "epoch 1's checkpoint", |e| {
            e.event == "checkpoint" && e.json()["epoch"] == 1
        });
    assert_eq!(epochs_of(&before), [1]);
    server.kill_hard();

    let server = Server::start(&data, &ckpts);
    let run = server.get_json(&format!("/api/runs/{id}"));
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(
        run["epochs_done"], 1,
        "the kill was meant to land during epoch 2 (if epoch 2 finished first, the run is too small)"
    );

    let response = server.post_json(&format!("/api/runs/{id}/resume"), &json!({}));
    assert!((200..300).contains(&response.status), "resume: {}", response.text());
    let events = server.events(&id, None).until_done(Deadline::default_limit());
    assert_ids_increase(&events);
    assert_eq!(
        epochs_of(&events),
        [1, 2, 3],
        "every epoch once across the kill and the resume"
    );
    assert_eq!(events.last().unwrap().json()["status"], "done");

    let run = server.get_json(&format!("/api/runs/{id}"));
    assert_eq!(run["status"], "done", "{run}");
    let stored: Vec<&Value> = run["epochs"].as_array().unwrap().iter().map(|e| &e["epoch"]).collect();
    assert_eq!(stored, [1, 2, 3]);
}

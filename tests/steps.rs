//! Step points end to end: a real short run through `cxr8 serve` stores its step-level training
//! curve within the configured budget, streams it as `step` events (replayed after a
//! Last-Event-ID like any other), serves it as JSON and CSV, and draws it on the step and
//! wall-time axes of the run and compare charts.

use serde_json::{json, Value};

use crate::util::{tiny_demo, Deadline, Server};

/// The budget the run is given: well under its step count, so the interval K is above 1.
const BUDGET: u64 = 8;

fn budget_run() -> Value {
    json!({
        "name": "step points",
        "model": "simple-cnn",
        "width": 0.25,
        "image_size": 64,
        "epochs": 2,
        "batch_size": 4,
        "max_images": 100,
        "device": "cpu",
        "learning_rate": 0.003,
        "seed": 5,
        "step_points": BUDGET,
    })
}

/// The most points any `<polyline>` of an SVG chart draws (plotters draws each line as one).
pub fn longest_polyline(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|element| {
            let points = element.split("points=\"").nth(1)?.split('"').next()?;
            Some(points.split_whitespace().count())
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_real_run_keeps_its_step_points_within_budget_and_draws_them_on_every_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    tiny_demo(&data);
    let server = Server::start(&data, &ckpts);
    let id = server.submit(&budget_run());
    let events = server.events(&id, None).until_done(Deadline::default_limit());
    let streamed: Vec<&crate::util::SseEvent> = events.iter().filter(|e| e.event == "step").collect();

    // Stored: within the budget, the same points as streamed, at multiples of K.
    let api = server.get_json(&format!("/api/runs/{id}/steps"));
    let points = api["points"]
        .as_array()
        .expect("points in /api/runs/{id}/steps")
        .clone();
    assert!(
        (2..=BUDGET as usize).contains(&points.len()),
        "a budget of {BUDGET} points: stored {}",
        points.len()
    );
    assert_eq!(
        points.iter().map(|p| p["step"].clone()).collect::<Vec<_>>(),
        streamed.iter().map(|e| e.json()["step"].clone()).collect::<Vec<_>>(),
        "the stream carries exactly the stored points"
    );
    let run = server.get_json(&format!("/api/runs/{id}"));
    let epochs = run["epochs"].as_array().unwrap();
    let per_epoch = epochs[0]["metrics"]["step"]
        .as_u64()
        .expect("epoch 1 knows its last step");
    assert_eq!(epochs[1]["metrics"]["step"].as_u64(), Some(2 * per_epoch), "{run}");
    let every = (2 * per_epoch).div_ceil(BUDGET);
    assert!(every > 1, "{per_epoch} steps per epoch");
    let number = |p: &Value, key: &str| p[key].as_f64().unwrap_or_else(|| panic!("{key} in {p}"));
    for pair in points.windows(2) {
        for key in ["step", "images", "wall_seconds"] {
            assert!(number(&pair[1], key) > number(&pair[0], key), "{key} grows: {pair:?}");
        }
    }
    for p in &points {
        assert_eq!(
            p["step"].as_u64().unwrap() % every,
            0,
            "points every {every} steps: {p}"
        );
        assert!(
            number(p, "loss").is_finite() && number(p, "window_steps") >= every as f64,
            "{p}"
        );
        assert!((0.0..=1.0).contains(&number(p, "exact_match")), "{p}");
    }
    let last_wall = number(points.last().unwrap(), "wall_seconds");
    assert!(number(&epochs[1]["metrics"], "wall_seconds") >= last_wall, "{run}");

    // Replayed after a Last-Event-ID like every other event.
    let first_seq = streamed[0].seq();
    let replayed: Vec<i64> = server
        .events(&id, Some(first_seq))
        .until_done(Deadline::default_limit())
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.seq())
        .collect();
    assert_eq!(replayed, streamed[1..].iter().map(|e| e.seq()).collect::<Vec<_>>());

    // CSV: a header and one row per point.
    let csv = server.get(&format!("/api/runs/{id}/steps.csv")).text();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,epoch,window_steps,loss,top1_accuracy,exact_match,images,lr,wall_seconds")
    );
    assert_eq!(lines.count(), points.len(), "{csv}");

    // Charts: the step line joins the training loss on the step and time axes only.
    let chart = |query: &str| {
        let response = server.get(&format!("/runs/{id}/charts/loss.svg{query}"));
        assert_eq!(response.status, 200, "{query}: {}", response.text());
        response.text()
    };
    let on_steps = chart("?x=step");
    assert!(on_steps.contains("train, per step (window mean)") && on_steps.contains("step (batches trained)"));
    assert_eq!(longest_polyline(&on_steps), points.len(), "every stored point is drawn");
    let on_time = chart("?x=time");
    assert!(on_time.contains("train, per step (window mean)") && on_time.contains("training time (s)"));
    let on_epochs = chart("");
    assert!(!on_epochs.contains("per step") && !on_epochs.contains("batches trained"));
    let compared = server.get(&format!("/compare/charts/train_loss.svg?runs={id}&x=step"));
    assert_eq!(compared.status, 200, "{}", compared.text());
    assert_eq!(
        longest_polyline(&compared.text()),
        points.len(),
        "compare draws the step points too"
    );

    // Bad axes are refused, naming the allowed ones.
    for path in [
        format!("/runs/{id}/charts/loss.svg?x=steps"),
        format!("/runs/{id}?x=wall"),
        format!("/compare/charts/train_loss.svg?runs={id}&x=1"),
    ] {
        let response = server.get(&path);
        assert_eq!(response.status, 400, "{path}");
        assert!(
            response.text().contains("epoch, step, time"),
            "{path}: {}",
            response.text()
        );
    }

    // The page offers the axis, keeps it selected and carries it to every line chart.
    let page = server.get(&format!("/runs/{id}?x=time")).text().replace("&#38;", "&");
    assert!(page.contains(r#"<option value="time" selected>"#), "{page}");
    assert!(
        page.contains("loss.svg?x=time") && page.contains("lr.svg?log=1&x=time"),
        "{page}"
    );
}

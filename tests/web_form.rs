//! The new-run form and run management from the pages: every config field on the form, presets,
//! cloning, form → JSON config (types), a message next to each bad field (422, nothing queued),
//! cancel / resume / delete (with checkpoint folders) / rename, and the queue on the runs page.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cxr8::service;
use cxr8::service::estimate::{form_defaults, Machine, Measure, StepCost};
use cxr8::store::{NewRun, RunStatus, Store};
use cxr8::train::presets::{self, PRESETS};
use cxr8::train::TrainConfig;
use cxr8::web::{FieldError, JobControl};
use serde_json::{json, Value};

use crate::util::{FixedStep, Reply, TestApp};

/// Stands in for the training engine with its real validation: resolves the data set like the
/// queue does, parses and validates with `TrainConfig::from_json`, records a queued run.
struct FakeJobs {
    store: Arc<Store>,
    submitted: Mutex<Vec<Value>>,
    /// What `queue()` answers, in order.
    queue: Mutex<Vec<String>>,
}

impl JobControl for FakeJobs {
    fn submit(&self, config: Value) -> Result<String, Vec<FieldError>> {
        let mut parsed = TrainConfig::from_json(&config.to_string())?;
        cxr8::service::runs::resolve_dataset(&self.store, &mut parsed).map_err(|e| vec![e])?;
        self.submitted.lock().unwrap().push(config.clone());
        let stored = serde_json::to_value(&parsed).unwrap();
        let id = self
            .store
            .create_run(&NewRun {
                name: parsed.name.as_deref().unwrap_or("submitted"),
                config: &stored,
                dataset: parsed.dataset.as_deref().unwrap_or("demo"),
                model: parsed.architecture.name(),
                image_size: parsed.image_size,
                epochs_planned: parsed.epochs as u32,
                tags: &parsed.tags,
            })
            .unwrap();
        Ok(id)
    }

    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        match self.store.run(id).unwrap() {
            Some(run) if run.status == RunStatus::Running => Ok(()),
            Some(run) if run.status == RunStatus::Queued => {
                self.queue.lock().unwrap().retain(|q| q != id);
                self.store.set_status(id, RunStatus::Cancelled, None).unwrap();
                Ok(())
            }
            Some(run) => Err(service::Error::Conflict(format!(
                "run {id} is {}, not queued or running",
                run.status.as_str()
            ))),
            None => Err(service::Error::UnknownRun(id.into())),
        }
    }

    fn resume(&self, id: &str) -> Result<(), service::Error> {
        match self.store.run(id).unwrap() {
            Some(run)
                if matches!(
                    run.status,
                    RunStatus::Interrupted | RunStatus::Cancelled | RunStatus::Failed
                ) =>
            {
                self.store.set_status(id, RunStatus::Queued, None).unwrap();
                Ok(())
            }
            Some(run) => Err(service::Error::Conflict(format!(
                "run {id} is {}; only interrupted, cancelled or failed runs resume",
                run.status.as_str()
            ))),
            None => Err(service::Error::UnknownRun(id.into())),
        }
    }

    fn queue(&self) -> Vec<String> {
        self.queue.lock().unwrap().clone()
    }
}

struct Fixture {
    app: TestApp,
    jobs: Arc<FakeJobs>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::timing_steps_with(Arc::new(FixedStep::quick()))
    }

    /// Estimates made with this step timing (the default takes a millisecond a step).
    fn timing_steps_with(measure: Arc<dyn Measure>) -> Fixture {
        let setup = TestApp::in_memory().step_timing(measure);
        let jobs = Arc::new(FakeJobs {
            store: setup.store(),
            submitted: Mutex::new(Vec::new()),
            queue: Mutex::new(Vec::new()),
        });
        Fixture {
            app: setup.jobs(jobs.clone()).build(),
            jobs,
        }
    }

    fn store(&self) -> &Store {
        self.app.store()
    }

    /// A run with `config` stored, in `status`.
    fn run(&self, name: &str, config: &TrainConfig, status: RunStatus) -> String {
        let value = serde_json::to_value(config).unwrap();
        let id = self
            .store()
            .create_run(&NewRun {
                name,
                config: &value,
                dataset: "demo",
                model: config.architecture.name(),
                image_size: config.image_size,
                epochs_planned: config.epochs as u32,
                tags: &config.tags,
            })
            .unwrap();
        if status != RunStatus::Queued {
            self.store().set_status(&id, status, None).unwrap();
        }
        id
    }

    fn submitted(&self) -> Vec<Value> {
        self.jobs.submitted.lock().unwrap().clone()
    }

    fn run_count(&self) -> usize {
        self.store().runs().unwrap().len()
    }
}

/// Undoes askama's HTML escaping of attribute values.
fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// What a browser would submit for the `new-run` form as rendered: text inputs, ticked
/// checkboxes and each select's chosen option, by name.
pub(crate) fn scrape_form(page: &str) -> Vec<(String, String)> {
    let start = page.find("<form id=\"new-run\"").expect("the new-run form");
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let tag_end = rest.find('>').unwrap();
        let tag = &rest[..tag_end];
        if tag.starts_with("<input") {
            let name = attribute(tag, "name").unwrap();
            let value = attribute(tag, "value").unwrap_or_default();
            if attribute(tag, "type").as_deref() == Some("checkbox") {
                if tag.contains(" checked") {
                    fields.push((name, value));
                }
            } else {
                fields.push((name, value));
            }
        } else if tag.starts_with("<select") {
            let name = attribute(tag, "name").unwrap();
            let body = &rest[..rest.find("</select>").unwrap()];
            let options: Vec<&str> = body.split("<option").skip(1).collect();
            let chosen = options
                .iter()
                .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
                .or(options.first())
                .expect("a select has options");
            fields.push((name, attribute(chosen, "value").unwrap()));
        }
        rest = &rest[tag_end..];
    }
    fields
}

fn form_value(page: &str, name: &str) -> Option<String> {
    scrape_form(page).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The form name of every `TrainConfig` JSON field (nested augmentation fields dotted).
fn config_field_names() -> Vec<String> {
    let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
    let mut names = Vec::new();
    for (key, value) in defaults.as_object().unwrap() {
        match (key.as_str(), value) {
            ("augment", Value::Object(inner)) => names.extend(inner.keys().map(|k| format!("augment.{k}"))),
            ("architecture", _) => names.push("model".into()),
            ("lr", _) => names.push("learning_rate".into()),
            (other, _) => names.push(other.into()),
        }
    }
    names
}

/// Posts a form as scraped, with some fields replaced (`None` removes a field).
async fn post_edited(f: &Fixture, page: &str, edits: &[(&str, Option<&str>)]) -> Reply {
    let mut fields = scrape_form(page);
    for (name, value) in edits {
        fields.retain(|(n, _)| n != name);
        if let Some(v) = value {
            fields.push((name.to_string(), v.to_string()));
        }
    }
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    f.app.post_form("/runs", &pairs).await
}

fn field_error<'a>(page: &'a str, field: &str) -> Option<&'a str> {
    let marker = format!("<p class=\"field-error\" data-field=\"{field}\">");
    let start = page.find(&marker)? + marker.len();
    Some(&page[start..start + page[start..].find("</p>")?])
}

#[tokio::test]
async fn form_has_an_input_for_every_config_field_with_defaults() {
    let f = Fixture::new();
    f.store()
        .add_dataset(
            "nih-sample",
            "/data/sample_labels.csv",
            "/data/images",
            None,
            &json!({}),
        )
        .unwrap();
    let page = f.app.get("/runs/new").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .text()
        .contains(r#"<form id="new-run" method="post" action="/runs">"#));
    assert!(page
        .text()
        .contains(r#"<button id="start-run" type="submit">Start training</button>"#));
    let form = scrape_form(page.text());
    for name in config_field_names() {
        assert!(
            page.text().contains(&format!(" name=\"{name}\"")),
            "no input named {name}"
        );
        // Checkboxes that are off are not submitted; everything else is.
        let is_checkbox = page.text().contains(&format!("type=\"checkbox\" id=\"f-{name}\""));
        assert!(
            is_checkbox || form.iter().any(|(n, _)| *n == name),
            "{name} not submitted"
        );
    }
    for legend in [
        "Data",
        "Model",
        "Optimisation",
        "Loss",
        "Augmentation",
        "Stopping &#38; checkpoints",
        "Run",
    ] {
        assert!(
            page.text().contains(&format!("<legend>{legend}</legend>")),
            "fieldset {legend}"
        );
    }
    // The machine's defaults (see `the_form_opens_with_defaults_that_fit_the_machine`).
    let (defaults, _) = form_defaults(Machine::get());
    assert_eq!(form_value(page.text(), "epochs").unwrap(), defaults.epochs.to_string());
    assert_eq!(
        form_value(page.text(), "learning_rate").unwrap(),
        defaults.lr.to_string()
    );
    assert_eq!(form_value(page.text(), "model").unwrap(), defaults.architecture.name());
    assert_eq!(form_value(page.text(), "dataset").unwrap(), "demo");
    assert_eq!(
        form_value(page.text(), "pos_weight").unwrap(),
        "true",
        "ticked by default"
    );
    assert_eq!(form_value(page.text(), "augment.rotate_deg").unwrap(), "5.0");
    for value in [
        "densenet-121",
        "mobilenet-v2",
        "efficientnet-b0",
        "adamw",
        "plateau",
        "focal",
        "val-loss",
        "cuda",
        "balanced",
        "nih-sample",
    ] {
        assert!(
            page.text().contains(&format!("<option value=\"{value}\"")),
            "option {value}"
        );
    }
    for (name, _) in PRESETS {
        assert!(page.text().contains(&format!(
            r#"<a class="preset" data-preset="{name}" href="/runs/new?preset={name}">"#
        )));
    }
    assert!(page.text().contains("Quick demo (CPU, about a minute)"));
    assert!(page
        .text()
        .contains("School project reproduction: SimpleCNN, SGD, MSE, batch 2"));
}

#[tokio::test]
async fn each_preset_fills_the_form_and_submits_as_itself() {
    let f = Fixture::new();
    for (name, _) in PRESETS {
        let page = f.app.get(&format!("/runs/new?preset={name}")).await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        let expected = presets::preset(name).unwrap();
        assert_eq!(
            form_value(page.text(), "epochs").unwrap(),
            expected.epochs.to_string(),
            "{name}"
        );
        assert_eq!(form_value(page.text(), "model").unwrap(), expected.architecture.name());
        let reply = post_edited(&f, page.text(), &[]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{name}: {}", reply.text());
        let sent = f.submitted().pop().unwrap();
        let mut config = TrainConfig::from_json(&sent.to_string()).unwrap();
        assert_eq!(config.dataset.as_deref(), Some("demo"));
        config.dataset = None;
        assert_eq!(config, expected, "{name}: the form carries every preset value");
    }
    let unknown = f.app.get("/runs/new?preset=turbo").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.text().contains("quick-demo"),
        "lists the presets: {}",
        unknown.text()
    );
}

#[tokio::test]
async fn clone_fills_the_form_from_a_stored_config() {
    let f = Fixture::new();
    let mut config = presets::preset("chexnet").unwrap();
    config.epochs = 7;
    config.grad_clip = Some(1.5);
    let id = f.run("baseline <1>", &config, RunStatus::Done);
    let page = f.app.get(&format!("/runs/new?from={id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(form_value(page.text(), "name").unwrap(), "copy of baseline <1>");
    assert_eq!(form_value(page.text(), "epochs").unwrap(), "7");
    assert_eq!(form_value(page.text(), "grad_clip").unwrap(), "1.5");
    assert_eq!(form_value(page.text(), "model").unwrap(), "densenet-121");
    assert_eq!(form_value(page.text(), "augment.hflip").unwrap(), "true");
    assert!(!page.text().contains("baseline <1>"), "the name is escaped");

    let reply = post_edited(&f, page.text(), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let sent = TrainConfig::from_json(&f.submitted()[0].to_string()).unwrap();
    assert_eq!(
        sent,
        TrainConfig {
            name: Some("copy of baseline <1>".into()),
            dataset: Some("demo".into()),
            ..config
        }
    );

    assert_eq!(f.app.get("/runs/new?from=nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_valid_form_queues_the_run_with_typed_json_and_redirects() {
    let f = Fixture::new();
    let page = f.app.get("/runs/new?preset=quick-demo").await;
    let reply = post_edited(
        &f,
        page.text(),
        &[
            ("epochs", Some("3")),
            ("learning_rate", Some("0.005")),
            ("max_images", Some("200")),
            ("name", Some("my run")),
            ("tags", Some("demo, first try ,")),
            ("augment.hflip", Some("true")),
            ("balanced_sampling", None),
            ("grad_clip", Some("")),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let id = f.store().runs().unwrap()[0].id.clone();
    assert_eq!(reply.location(), Some(format!("/runs/{id}").as_str()));
    let sent = f.submitted();
    assert_eq!(sent.len(), 1);
    let json = &sent[0];
    assert_eq!(json["epochs"], json!(3), "a whole number, not a string");
    assert!(json["epochs"].is_u64());
    assert_eq!(json["learning_rate"].as_f64(), Some(0.005));
    assert_eq!(json["max_images"], json!(200));
    assert_eq!(json["image_size"], json!(64));
    assert_eq!(json["model"], json!("simple-cnn"));
    assert_eq!(json["dataset"], json!("demo"));
    assert_eq!(json["name"], json!("my run"));
    assert_eq!(json["tags"], json!(["demo", "first try"]));
    assert_eq!(json["augment"]["hflip"], json!(true));
    assert_eq!(json["augment"]["enabled"], json!(true));
    assert_eq!(json["balanced_sampling"], json!(false), "an unticked checkbox is false");
    assert!(json.get("grad_clip").is_none(), "an empty optional field is left out");
    assert!(
        json.get("architecture").is_none() && json.get("lr").is_none(),
        "the form's names are sent"
    );
}

#[tokio::test]
async fn each_bad_field_gets_its_own_message_and_nothing_is_queued() {
    let f = Fixture::new();
    let page = f.app.get("/runs/new").await;
    // (edits, field whose message must appear, text in that message)
    type Case<'a> = (&'a [(&'a str, Option<&'a str>)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("epochs", Some("abc"))],
            "epochs",
            "epochs: 'abc' is not a whole number",
        ),
        (&[("epochs", Some("-2"))], "epochs", "is not a whole number"),
        (
            &[("learning_rate", Some("fast"))],
            "learning_rate",
            "'fast' is not a number",
        ),
        (&[("batch_size", Some(""))], "batch_size", "is empty"),
        (
            &[("model", Some("alexnet"))],
            "model",
            "'alexnet' is not one of the choices",
        ),
        (&[("optimizer", Some("adagrad"))], "optimizer", "adamw"),
        (&[("model", None)], "model", "is empty"),
        (&[("image_size", Some("99999999999"))], "image_size", "too large"),
        // Out of range: the engine's own validation, placed next to the field.
        (&[("epochs", Some("0"))], "epochs", "use 1 to"),
        (&[("learning_rate", Some("-1"))], "learning_rate", "positive"),
        (
            &[("augment.rotate_deg", Some("400"))],
            "augment.rotate_deg",
            "use 0 to 180",
        ),
        (&[("dataset", Some("nope"))], "dataset", "not one of the choices"),
        (&[("nesterov", Some("true"))], "nesterov", "sgd"),
        (&[("tags", Some("a,  ,b"))], "", ""),
    ];
    for (edits, field, text) in cases {
        let before = f.run_count();
        let reply = post_edited(&f, page.text(), edits).await;
        if field.is_empty() {
            // Blank tags between commas are dropped, not an error.
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{edits:?}: {}", reply.text());
            continue;
        }
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{edits:?}");
        let message =
            field_error(reply.text(), field).unwrap_or_else(|| panic!("{edits:?}: no message next to {field}"));
        assert!(unescape(message).contains(text), "{edits:?}: {message}");
        assert!(reply.text().contains("id=\"form-errors\""), "a summary at the top");
        assert_eq!(f.run_count(), before, "{edits:?}: nothing queued");
        // The user's values stay in the form.
        for (name, value) in edits.iter() {
            if let (Some(value), false) = (value, *name == "nesterov") {
                assert_eq!(form_value(reply.text(), name).as_deref(), Some(*value), "{name} kept");
            }
        }
    }
    assert_eq!(f.submitted().len(), 1, "only the valid tags case was submitted");

    // Several problems at once: a message beside each.
    let reply = post_edited(&f, page.text(), &[("epochs", Some("x")), ("width", Some("y"))]).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(reply.text(), "epochs").is_some() && field_error(reply.text(), "width").is_some());
}

#[tokio::test]
async fn a_registered_data_set_can_be_chosen() {
    let f = Fixture::new();
    f.store()
        .add_dataset(
            "nih-sample",
            "/data/sample_labels.csv",
            "/data/images",
            None,
            &json!({}),
        )
        .unwrap();
    let page = f.app.get("/runs/new").await;
    let reply = post_edited(&f, page.text(), &[("dataset", Some("nih-sample"))]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(f.submitted()[0]["dataset"], json!("nih-sample"));
    let stored = &f.store().runs().unwrap()[0].config;
    assert_eq!(
        stored["labels"],
        json!("/data/sample_labels.csv"),
        "resolved by the engine"
    );
}

#[tokio::test]
async fn a_malformed_form_body_is_a_bad_request() {
    let f = Fixture::new();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/runs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let reply = f.app.send(request).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert!(f.submitted().is_empty());
}

#[tokio::test]
async fn cancel_and_resume_redirect_back_or_explain() {
    let f = Fixture::new();
    let config = TrainConfig::default();
    let running = f.run("running", &config, RunStatus::Running);
    let done = f.run("done", &config, RunStatus::Done);
    let interrupted = f.run("interrupted", &config, RunStatus::Interrupted);

    let reply = f.app.post_form(&format!("/runs/{running}/cancel"), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location().unwrap(), format!("/runs/{running}"));
    let reply = f
        .app
        .post_form(&format!("/runs/{running}/cancel"), &[("back", "/")])
        .await;
    assert_eq!(reply.location(), Some("/"));
    let reply = f
        .app
        .post_form(&format!("/runs/{running}/cancel"), &[("back", "https://evil.example/")])
        .await;
    assert_eq!(
        reply.location().unwrap(),
        format!("/runs/{running}"),
        "no redirect elsewhere"
    );

    let refused = f.app.post_form(&format!("/runs/{done}/cancel"), &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.text().contains("is done, not queued or running"),
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("<html"), "an HTML page for the browser");

    let reply = f.app.post_form(&format!("/runs/{interrupted}/resume"), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(f.store().run(&interrupted).unwrap().unwrap().status, RunStatus::Queued);
    assert_eq!(
        f.app.post_form(&format!("/runs/{running}/resume"), &[]).await.status,
        StatusCode::CONFLICT
    );

    for action in ["cancel", "resume", "delete", "meta"] {
        let reply = f.app.post_form(&format!("/runs/nope/{action}"), &[("name", "x")]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
        assert!(reply.text().contains("no run with id"), "{action}");
    }
    assert_eq!(f.app.get("/runs/nope/delete").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_asks_first_then_removes_the_run_and_its_checkpoints() {
    let f = Fixture::new();
    let config = TrainConfig::default();
    let done = f.run("old run", &config, RunStatus::Done);
    let ckpt = f.app.root().join("ckpts").join(&done).join("best");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("model.bpk"), b"weights").unwrap();

    let confirm = f.app.get(&format!("/runs/{done}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.text().contains("Delete run old run and its checkpoints?"));
    assert!(confirm.text().contains(&format!("action=\"/runs/{done}/delete\"")));
    assert!(f.store().run(&done).unwrap().is_some(), "asking deletes nothing");

    let reply = f.app.post_form(&format!("/runs/{done}/delete"), &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location(), Some("/"));
    assert!(f.store().run(&done).unwrap().is_none());
    assert!(!f.app.root().join("ckpts").join(&done).exists(), "checkpoints removed");
    assert!(
        f.app.root().join("ckpts").exists(),
        "the checkpoint folder itself stays"
    );

    let running = f.run("busy", &config, RunStatus::Running);
    for reply in [
        f.app.get(&format!("/runs/{running}/delete")).await,
        f.app.post_form(&format!("/runs/{running}/delete"), &[]).await,
    ] {
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(reply.text().contains("cancel it first"), "{}", reply.text());
    }
    assert!(f.store().run(&running).unwrap().is_some());
}

#[tokio::test]
async fn delete_never_touches_a_folder_outside_the_checkpoint_folder() {
    let f = Fixture::new();
    let outside = f.app.root().join("precious");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), b"keep").unwrap();
    let done = f.run("odd", &TrainConfig::default(), RunStatus::Done);
    f.store()
        .set_runtime_info(&done, "cpu", outside.to_str().unwrap())
        .unwrap();

    let confirm = f.app.get(&format!("/runs/{done}/delete")).await;
    assert!(
        confirm.text().contains("outside the checkpoint folder"),
        "{}",
        confirm.text()
    );
    let reply = f.app.post_form(&format!("/runs/{done}/delete"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("left in place"));
    assert!(outside.join("keep.txt").exists(), "the outside folder survives");
    assert!(f.store().run(&done).unwrap().is_none(), "the run itself is deleted");

    // The JSON API deletes the same way.
    let other = f.run("api", &TrainConfig::default(), RunStatus::Failed);
    f.store()
        .set_runtime_info(&other, "cpu", outside.to_str().unwrap())
        .unwrap();
    let inside = f.app.root().join("ckpts").join(&other);
    std::fs::create_dir_all(&inside).unwrap();
    let reply = f.app.send_empty(Method::DELETE, &format!("/api/runs/{other}")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(!inside.exists(), "the API removes checkpoints too");
    assert!(outside.join("keep.txt").exists());
}

#[tokio::test]
async fn meta_renames_retags_and_annotates() {
    let f = Fixture::new();
    let id = f.run("before", &TrainConfig::default(), RunStatus::Done);
    let reply = f
        .app
        .post_form(
            &format!("/runs/{id}/meta"),
            &[("name", "after"), ("tags", "good, keep"), ("notes", "best so far")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let run = f.store().run(&id).unwrap().unwrap();
    assert_eq!(
        (run.name.as_str(), run.tags.clone(), run.notes.as_str()),
        ("after", vec!["good".to_string(), "keep".to_string()], "best so far")
    );

    let reply = f
        .app
        .post_form(
            &format!("/runs/{id}/meta"),
            &[("name", " "), ("tags", ""), ("notes", "")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.text().contains("name: is empty"), "{}", reply.text());
    assert_eq!(f.store().run(&id).unwrap().unwrap().name, "after", "nothing changed");

    let page = f.app.get(&format!("/runs/{id}")).await;
    assert!(page.text().contains(&format!("action=\"/runs/{id}/meta\"")));
    assert!(page.text().contains("value=\"good, keep\""));
}

#[tokio::test]
async fn runs_and_run_pages_link_to_the_form_and_show_the_queue() {
    let f = Fixture::new();
    let config = TrainConfig::default();
    let training = f.run("training now", &config, RunStatus::Running);
    let waiting = f.run("waiting", &config, RunStatus::Queued);
    let finished = f.run("finished", &config, RunStatus::Done);
    *f.jobs.queue.lock().unwrap() = vec![training.clone(), waiting.clone()];

    let page = f.app.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.text();
    assert!(body.contains(r#"<a id="new-run-link""#) && body.contains(r#"href="/runs/new""#));
    assert!(body.contains(r#"<form id="compare-form" method="get" action="/compare">"#));
    assert!(body.contains(r#"<button id="compare-button""#));
    for id in [&training, &waiting, &finished] {
        assert!(body.contains(&format!("<tr data-run=\"{id}\">")));
        assert!(body.contains(&format!(r#"<input type="checkbox" name="runs" value="{id}""#)));
        assert!(body.contains(&format!("href=\"/runs/new?from={id}\"")), "clone link");
    }
    let queue = &body[body.find("id=\"queue\"").expect("a queue section")..];
    let queue = &queue[..queue.find("</section>").unwrap()];
    let (first, second) = (queue.find("training now").unwrap(), queue.find("waiting").unwrap());
    assert!(first < second, "in training order");
    assert!(queue.contains(&format!("action=\"/runs/{waiting}/cancel\"")));
    assert!(queue.contains("Remove from queue"));

    let reply = f
        .app
        .post_form(&format!("/runs/{waiting}/cancel"), &[("back", "/")])
        .await;
    assert_eq!(reply.location(), Some("/"));
    assert!(!f
        .app
        .get("/")
        .await
        .text()
        .contains(&format!("action=\"/runs/{waiting}/cancel\"")));

    let run_page = f.app.get(&format!("/runs/{finished}")).await;
    assert!(run_page.text().contains(&format!("href=\"/runs/new?from={finished}\"")));
    assert!(run_page.text().contains(&format!("href=\"/runs/{finished}/delete\"")));
    let running_page = f.app.get(&format!("/runs/{training}")).await;
    assert!(running_page
        .text()
        .contains(&format!("action=\"/runs/{training}/cancel\"")));
    assert!(!running_page
        .text()
        .contains(&format!("href=\"/runs/{training}/delete\"")));

    let js = f.app.get("/static/actions.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.text().contains("confirm("));
}

/// A step of a second per image: the default configuration takes hours.
fn slow_step() -> Arc<dyn Measure> {
    Arc::new(FixedStep(StepCost {
        batch: 8,
        train_ms_per_step: 8000.0,
        infer_ms_per_batch: 2000.0,
        timed_steps: 1,
        timed_batches: 1,
    }))
}

#[tokio::test]
async fn the_form_opens_with_defaults_that_fit_the_machine() {
    let f = Fixture::new();
    let page = f.app.get("/runs/new").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    if cxr8::train::backend::detect_cuda().is_err() {
        // This machine: the CPU-sized run, and one line saying so.
        let cpu = presets::cpu_sized();
        assert_eq!(form_value(text, "model").unwrap(), "simple-cnn");
        assert_eq!(form_value(text, "image_size").unwrap(), "64");
        assert_eq!(form_value(text, "epochs").unwrap(), cpu.epochs.to_string());
        assert_eq!(form_value(text, "device").unwrap(), "auto");
        assert!(text.contains("No usable GPU ("), "says why: {text}");
        assert!(text.contains("CPU-sized run"), "{text}");
    } else {
        assert_eq!(form_value(text, "model").unwrap(), "resnet-18");
        assert!(text.contains("A GPU is usable"), "{text}");
    }
    // A preset or a clone is shown as it is, whatever the machine.
    let chexnet = f.app.get("/runs/new?preset=chexnet").await;
    assert_eq!(form_value(chexnet.text(), "model").unwrap(), "densenet-121");
    assert!(!chexnet.text().contains("CPU-sized run"));
    // The page carries its estimate box and script; nothing is timed before the script asks.
    assert!(text.contains(r#"<section id="estimate""#));
    assert!(
        text.contains("Estimated duration: timed when you change the model"),
        "{text}"
    );
    assert!(text.contains(r#"<script src="/static/estimate.js" defer></script>"#));
    let script = f.app.get("/static/estimate.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text().contains("/api/estimate?"));
}

#[tokio::test]
async fn a_run_estimated_over_an_hour_is_queued_only_when_confirmed() {
    let f = Fixture::timing_steps_with(slow_step());
    let page = f.app.get("/runs/new?preset=quick-demo").await;
    let refused = post_edited(&f, page.text(), &[]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.short());
    assert_eq!(f.run_count(), 0, "nothing is queued without the confirmation");
    let text = refused.text();
    assert!(text.contains("This run is estimated to take "), "{text}");
    assert!(text.contains("more than 1h 00m"), "{text}");
    assert!(
        text.contains(r#"<label class="check" id="confirm-long-row">"#),
        "the box is shown: {text}"
    );
    assert!(
        text.contains("Estimated duration: "),
        "the estimate is on the page: {text}"
    );
    // The values come back as typed.
    assert_eq!(form_value(text, "model").unwrap(), "simple-cnn");

    let accepted = post_edited(&f, text, &[("confirm_long", Some("true"))]).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.short());
    let id = f.store().runs().unwrap()[0].id.clone();
    let stored = f
        .store()
        .run_estimate(&id)
        .unwrap()
        .expect("the estimate is kept with the run");
    let total = stored["total_seconds"].as_f64().unwrap();
    assert!(total > 3600.0, "{stored}");

    // A run under an hour needs no confirmation.
    let short = post_edited(&f, page.text(), &[("epochs", Some("2")), ("max_images", Some("50"))]).await;
    assert_eq!(short.status, StatusCode::SEE_OTHER, "{}", short.short());
}

#[tokio::test]
async fn the_run_page_sets_the_estimate_against_the_eta_and_the_real_duration() {
    let f = Fixture::timing_steps_with(slow_step());
    let page = f.app.get("/runs/new?preset=quick-demo").await;
    let reply = post_edited(&f, page.text(), &[("confirm_long", Some("true"))]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.short());
    let id = f.store().runs().unwrap()[0].id.clone();
    let total = f.store().run_estimate(&id).unwrap().unwrap()["total_seconds"]
        .as_f64()
        .unwrap();
    // Shown as hours and minutes, as the runs list shows durations.
    let seconds = total.round() as u64;
    let expected = format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60);

    let queued = f.app.get(&format!("/runs/{id}")).await;
    let text = queued.text();
    assert!(text.contains(&format!("estimated {expected} before start")), "{text}");
    assert!(
        text.contains(r#"<span id="eta-now">"#),
        "the live ETA goes beside it: {text}"
    );

    f.store().set_status(&id, RunStatus::Running, None).unwrap();
    f.store().set_status(&id, RunStatus::Done, None).unwrap();
    let done = f.app.get(&format!("/runs/{id}")).await;
    assert!(done.text().contains(&format!("estimated {expected} before start")));
    assert!(done.text().contains("; took "), "{}", done.text());

    // A run submitted without an estimate shows no estimate line.
    let other = f.run("no estimate", &TrainConfig::default(), RunStatus::Done);
    assert!(!f
        .app
        .get(&format!("/runs/{other}"))
        .await
        .text()
        .contains("before start"));
}

#[tokio::test]
async fn the_estimate_endpoint_times_a_configuration_once_then_answers_from_the_store() {
    let app = TestApp::in_memory().real_step_timing().build();
    let query = "/api/estimate?model=simple-cnn&width=0.125&image_size=64&batch_size=4&epochs=2&max_images=40";
    let first = app.get(query).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.short());
    let first = first.json();
    assert_eq!(first["basis"], "measured", "{first}");
    let total = first["total_seconds"].as_f64().unwrap();
    assert!(total > 0.0 && total.is_finite(), "{first}");
    assert_eq!(first["step"]["batch"], 4);
    assert!(first["step"]["timed_steps"].as_u64().unwrap() >= 1);
    assert!(first["images"]["train"].as_u64().unwrap() > 0);
    assert!(first["headline"].as_str().unwrap().starts_with("Estimated duration: "));
    assert_eq!(first["needs_confirmation"], false);

    // Other epochs and image counts reuse the timing; nothing is timed again.
    let again = app.get(&query.replace("epochs=2", "epochs=5")).await.json();
    assert_eq!(again["basis"], "cached", "{again}");
    assert_eq!(again["measured_at"], first["measured_at"]);
    assert_eq!(app.state.estimates.measurements(), 1);
    assert_eq!(app.store().step_timing_count().unwrap(), 1);
}

#[tokio::test]
async fn nothing_is_timed_while_a_run_is_queued_or_training() {
    let f = Fixture::new();
    f.jobs.queue.lock().unwrap().push("someone".into());
    let reply = f.app.get("/api/estimate?model=simple-cnn&image_size=64").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["basis"], "deferred", "{body}");
    assert!(body["total_seconds"].is_null());
    assert!(body["note"].as_str().unwrap().contains("queued or training"), "{body}");
    assert_eq!(f.app.state.estimates.measurements(), 0);
}

#[tokio::test]
async fn bad_estimate_queries_are_400_naming_the_parameter() {
    let f = Fixture::new();
    for (query, expected) in [
        ("image_size=big", "'big' is not a whole number"),
        ("modle=resnet-18", "unknown parameter 'modle'"),
        ("model=resnet-1000", "'resnet-1000' is not one of the choices"),
        ("epochs=0", "epochs"),
        ("image_size=16", "image_size"),
        ("dataset=nope", "'nope' is not one of the choices"),
        ("augment.enabled=perhaps", "not true or false"),
    ] {
        let reply = f.app.get(&format!("/api/estimate?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {}", reply.short());
        let message = reply.json()["error"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{query}: {message}");
    }
}

#[tokio::test]
async fn the_api_reports_a_timed_estimate_with_the_new_run_without_asking_to_confirm() {
    let f = Fixture::timing_steps_with(slow_step());
    let config = json!({"model": "simple-cnn", "image_size": 64, "epochs": 8, "dataset": "demo"});
    let untimed = f.app.post_json("/api/runs", &config).await;
    assert_eq!(untimed.status, StatusCode::CREATED, "{}", untimed.short());
    assert!(
        untimed.json()["estimate"].is_null(),
        "not timed yet: {}",
        untimed.text()
    );

    let timed = f
        .app
        .get("/api/estimate?model=simple-cnn&image_size=64&epochs=8")
        .await
        .json();
    assert_eq!(timed["needs_confirmation"], true);
    let created = f.app.post_json("/api/runs", &config).await;
    assert_eq!(created.status, StatusCode::CREATED, "over an hour, queued all the same");
    let body = created.json();
    assert_eq!(body["estimate"]["total_seconds"], timed["total_seconds"]);
    let id = body["id"].as_str().unwrap();
    assert_eq!(f.store().run_estimate(id).unwrap().unwrap(), body["estimate"]);
}

//! Bad input against every route that takes input: each field of `POST /runs`, `POST /api/runs`,
//! `POST /datasets`, `POST /predict` (and `/api/predict`) and `POST /runs/{id}/meta` with values
//! of the wrong type, out of range, empty, huge, Unicode, NUL bytes, SQL and HTML injection and
//! path traversal; unknown ids on every `{id}` route; traversal in every path-taking field or
//! address; oversized uploads; deleting a run while it trains. Every refusal must be a 4xx whose
//! message names the field (or a plain 404), and leave the store exactly as it was (runs, epochs,
//! events, data sets; `PRAGMA integrity_check`). Counts are printed for RELIABILITY.md "Bad input"
//! (`cargo test --test tests bad_input -- --nocapture`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use cxr8::service;
use cxr8::service::datasets::{self, Registration};
use cxr8::store::{NewRun, RunStatus, Store};
use cxr8::train::TrainConfig;
use cxr8::web::{FieldError, JobControl};
use serde_json::{json, Value};

use crate::util::{encode_component, encode_form, from_page, Multipart, Reply, TestApp, FORM, JSON};

/// The engine's write side with its real validation (parse, validate, resolve the data set);
/// runs are only recorded, never trained.
pub(crate) struct Engine {
    pub store: Arc<Store>,
}

impl JobControl for Engine {
    fn submit(&self, config: Value) -> Result<String, Vec<FieldError>> {
        let mut parsed = TrainConfig::from_json(&config.to_string())?;
        cxr8::service::runs::resolve_dataset(&self.store, &mut parsed).map_err(|e| vec![e])?;
        parsed.validate()?;
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
            .map_err(|e| vec![FieldError::new("store", e.to_string())])?;
        Ok(id)
    }

    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        match self.store.run(id).unwrap() {
            // The worker would stop between batches; nothing changes at once.
            Some(run) if run.status == RunStatus::Running => Ok(()),
            Some(run) => Err(service::Error::Conflict(format!("run {id} is {}", run.status.as_str()))),
            None => Err(service::Error::UnknownRun(id.into())),
        }
    }

    fn resume(&self, id: &str) -> Result<(), service::Error> {
        match self.store.run(id).unwrap() {
            Some(run) => Err(service::Error::Conflict(format!("run {id} is {}", run.status.as_str()))),
            None => Err(service::Error::UnknownRun(id.into())),
        }
    }

    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

struct Fixture {
    app: TestApp,
    /// Finished, two epochs, a (fake) best checkpoint folder.
    done: String,
    /// Training, no checkpoint.
    running: String,
    /// A registered data set whose folder also holds a link out of it and a corrupt image.
    dataset: String,
    /// A complete, unregistered data set used as the valid base of the add form.
    fresh_labels: PathBuf,
    fresh_images: PathBuf,
    /// A file outside every data folder that no route may serve.
    secret: PathBuf,
}

fn png(side: u32, seed: u8) -> Vec<u8> {
    let image = image::GrayImage::from_fn(side, side, |x, y| image::Luma([(x * 5 + y * 3) as u8 ^ seed]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A one-hot label file naming `names`, in `dir/labels.csv`.
fn label_file(dir: &Path, names: &[&str]) -> PathBuf {
    let mut csv = String::from("id,subject_id,Atelectasis,Effusion\n");
    for (i, name) in names.iter().enumerate() {
        csv.push_str(&format!("{name},{},{},{}\n", i / 2, i % 2, (i + 1) % 2));
    }
    let path = dir.join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn new_run<'a>(name: &'a str, config: &'a Value, epochs: u32) -> NewRun<'a> {
    NewRun {
        name,
        config,
        dataset: "demo",
        model: "resnet-18",
        image_size: 64,
        epochs_planned: epochs,
        tags: &[],
    }
}

impl Fixture {
    fn new() -> Fixture {
        let setup = TestApp::on_disk();
        let root = setup.root().to_path_buf();
        let store = setup.store();

        let config = json!({"model": "resnet-18", "lr": 0.001});
        let done = store.create_run(&new_run("finished", &config, 2)).unwrap();
        store.set_status(&done, RunStatus::Running, None).unwrap();
        for epoch in 1..=2 {
            let metrics = json!({"val_loss": 1.0 / epoch as f64, "val_mean_auroc": 0.6 + 0.05 * epoch as f64});
            store.record_epoch(&done, epoch, &metrics, None).unwrap();
            store.append_event(&done, "epoch", &json!({"epoch": epoch})).unwrap();
        }
        store.set_status(&done, RunStatus::Done, None).unwrap();
        // A best checkpoint as the trainer lays it out (pointer + epoch folder), without weights:
        // enough for the predict form to get as far as reading the upload.
        let run_ckpt = setup.ckpt_dir().join(&done);
        std::fs::create_dir_all(run_ckpt.join("epoch-0002")).unwrap();
        std::fs::write(run_ckpt.join("best.json"), r#"{"epoch": 2, "dir": "epoch-0002"}"#).unwrap();

        let running = store.create_run(&new_run("training", &config, 10)).unwrap();
        store.set_status(&running, RunStatus::Running, None).unwrap();
        store
            .record_epoch(&running, 1, &json!({"val_loss": 0.9}), None)
            .unwrap();

        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let secret = outside.join("secret.png");
        std::fs::write(&secret, "TOP SECRET, not an image").unwrap();

        // The registered set: two good images, one corrupt, one link to the secret.
        let set = root.join("set");
        let images = set.join("imgs");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("a.png"), png(40, 1)).unwrap();
        std::fs::write(images.join("b.png"), png(40, 2)).unwrap();
        std::fs::write(images.join("c.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
        std::os::unix::fs::symlink(&secret, images.join("s.png")).unwrap();
        let labels = label_file(&set, &["a.png", "b.png", "c.png", "s.png"]);
        let registration = Registration {
            name: "small".into(),
            label_file: labels.to_string_lossy().into(),
            image_dir: images.to_string_lossy().into(),
            allow_missing: true,
            ..Default::default()
        };
        datasets::register(&store, &registration).unwrap();

        let fresh = root.join("fresh");
        let fresh_images = fresh.join("imgs");
        std::fs::create_dir_all(&fresh_images).unwrap();
        std::fs::write(fresh_images.join("x.png"), png(40, 3)).unwrap();
        std::fs::write(fresh_images.join("y.png"), png(40, 4)).unwrap();
        let fresh_labels = label_file(&fresh, &["x.png", "y.png"]);

        let engine = Arc::new(Engine { store: store.clone() });
        Fixture {
            app: setup.jobs(engine).build(),
            done,
            running,
            dataset: "small".into(),
            fresh_labels,
            fresh_images,
            secret,
        }
    }

    fn store(&self) -> &Store {
        self.app.store()
    }

    /// Everything a bad request must leave alone.
    fn snapshot(&self) -> Value {
        let runs = self.store().runs().unwrap();
        let per_run: BTreeMap<String, Value> = runs
            .iter()
            .map(|r| {
                let epochs = self.store().epochs(&r.id).unwrap();
                let events = self.store().events_after(&r.id, 0).unwrap();
                (r.id.clone(), json!({"epochs": epochs, "events": events}))
            })
            .collect();
        let uploads: Vec<String> = std::fs::read_dir(self.app.state.data_dir.join("uploads"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let checkpoints: Vec<String> = std::fs::read_dir(&self.app.state.ckpt_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        json!({
            "runs": runs,
            "per_run": per_run,
            "datasets": self.store().datasets().unwrap(),
            "uploads": uploads,
            "checkpoints": checkpoints,
        })
    }

    fn assert_unchanged(&self, before: &Value, what: &str) {
        let after = self.snapshot();
        assert!(
            after == *before,
            "{what}: the store changed\nbefore: {before}\nafter: {after}"
        );
        assert_eq!(self.store().integrity_check().unwrap(), "ok", "{what}");
    }
}

/// Field names the reply blames: JSON `fields`, the new-run form's and the data set form's
/// per-field messages, and the message page's `field: …` lines.
fn names_field(reply: &Reply, field: &str) -> bool {
    let body = reply.text();
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        let reported: Vec<&str> = json["fields"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        return reported.iter().any(|r| same_field(r, field));
    }
    let reported: Vec<String> = body
        .split("data-field=\"")
        .skip(1)
        .chain(body.split("class=\"error field-error\" id=\"").skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(|name| name.trim_end_matches("-error").to_string())
        .chain(
            body.split("<li>")
                .skip(1)
                .filter_map(|rest| rest.split(':').next())
                .map(String::from),
        )
        .chain(
            body.split("<p class=\"message\">")
                .skip(1)
                .filter_map(|rest| rest.split(':').next())
                .map(String::from),
        )
        .collect();
    reported.iter().any(|r| same_field(r, field))
}

/// Whether an error about `reported` is about `field`: the same name, a parent object, or the
/// name validation uses for it (`lr` for `learning_rate`, `aug_rotate` for `augment.rotate_deg`).
fn same_field(reported: &str, field: &str) -> bool {
    let alias = |name: &str| -> String {
        match name {
            "learning_rate" => "lr".into(),
            "model" => "architecture".into(),
            "augment.rotate_deg" => "aug_rotate".into(),
            other => other.replace("augment.", "aug_"),
        }
    };
    reported == field || field.starts_with(&format!("{reported}.")) || alias(reported) == alias(field)
}

/// The text values every field gets, by class.
fn text_classes() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("huge (1 MB)", "x".repeat(1 << 20)),
        ("long (100 KB)", "y".repeat(100 << 10)),
        ("unicode", "é🚀中文\u{202e}txt".into()),
        ("NUL byte", "a\u{0}b".into()),
        ("SQL injection", "x'); DROP TABLE runs; --".into()),
        ("HTML injection", "<script>alert(1)</script>".into()),
        ("path traversal", "../../../../../../etc/passwd".into()),
    ]
}

/// Counts per input class: tried, refused (4xx), accepted.
#[derive(Default)]
struct Tally(BTreeMap<String, [usize; 3]>);

impl Tally {
    fn add(&mut self, class: &str, refused: bool) {
        let row = self.0.entry(class.to_string()).or_default();
        row[0] += 1;
        row[if refused { 1 } else { 2 }] += 1;
    }

    fn print(&self, test: &str) {
        let (mut tried, mut refused) = (0, 0);
        for (class, [t, r, a]) in &self.0 {
            eprintln!("{test}: {class}: tried {t}, refused {r}, accepted {a}");
            tried += t;
            refused += r;
        }
        eprintln!("{test}: total tried {tried}, refused {refused}");
    }
}

/// Applies one outcome: a refusal must be a 4xx that names `field` (when given) and changes
/// nothing; an acceptance is allowed only when `may_accept`, and must add exactly the one run
/// `check_accepted` approves of, which is then removed again.
struct Outcome<'a> {
    what: String,
    field: Option<&'a str>,
    may_accept: bool,
}

fn new_runs(f: &Fixture, before: &Value) -> Vec<String> {
    let known: HashSet<&str> = before["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    f.store()
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .filter(|id| !known.contains(id.as_str()))
        .collect()
}

fn judge(f: &Fixture, tally: &mut Tally, class: &str, reply: &Reply, before: &Value, outcome: Outcome<'_>) {
    let what = &outcome.what;
    assert!(!reply.status.is_server_error(), "{what}: {}", reply.short());
    if reply.status.is_client_error() {
        if reply.status != StatusCode::PAYLOAD_TOO_LARGE {
            if let Some(field) = outcome.field {
                assert!(
                    names_field(reply, field),
                    "{what}: the reply does not name {field}: {}",
                    reply.short()
                );
            }
        } else {
            assert!(
                reply.text().contains("larger than"),
                "{what}: 413 without a message: {}",
                reply.short()
            );
        }
        f.assert_unchanged(before, what);
        tally.add(class, true);
        return;
    }
    assert!(
        outcome.may_accept,
        "{what}: accepted but must be refused: {}",
        reply.short()
    );
    let added = new_runs(f, before);
    assert!(added.len() <= 1, "{what}: {} runs added", added.len());
    for id in added {
        let run = f.store().run(&id).unwrap().unwrap();
        // Stored exactly as the engine parsed it: the config still validates.
        let config: TrainConfig = serde_json::from_value(run.config.clone()).unwrap();
        assert!(
            config.validate().is_ok(),
            "{what}: stored an invalid config {}",
            run.config
        );
        f.store().delete_run(&id).unwrap();
    }
    f.assert_unchanged(before, what);
    tally.add(class, false);
}

/// The JSON config fields: every key of the default config (nested `augment.*` spelled out) and
/// the form's aliases, with the default value that tells its type.
fn config_fields() -> Vec<(String, Value)> {
    let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
    let mut fields = Vec::new();
    for (key, value) in defaults.as_object().unwrap() {
        match value {
            Value::Object(inner) => {
                for (sub, v) in inner {
                    fields.push((format!("{key}.{sub}"), v.clone()));
                }
            }
            v => fields.push((key.clone(), v.clone())),
        }
    }
    fields.push(("model".into(), json!("resnet-18")));
    fields.push(("learning_rate".into(), json!(0.001)));
    fields
}

fn with_field(field: &str, value: Value) -> Value {
    match field.split_once('.') {
        Some((outer, inner)) => json!({ outer: { inner: value } }),
        None => json!({ field: value }),
    }
}

/// Fields whose text values are legitimately free text (`labels_include` names labels of a file
/// read only when the run starts, which refuses an unknown name with the names there are).
const FREE_TEXT: [&str; 3] = ["name", "tags", "labels_include"];

#[tokio::test]
async fn api_runs_refuses_bad_values_of_every_field_by_name() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    // The all-defaults config is valid (the demo set): the baseline every case edits one field of.
    let baseline = f.app.post_json("/api/runs", &json!({})).await;
    assert_eq!(baseline.status, StatusCode::CREATED, "{}", baseline.short());
    let before = f.snapshot();
    for (field, default) in config_fields() {
        let wrong_type = match &default {
            Value::Number(_) => json!("abc"),
            Value::String(_) => json!(12),
            Value::Bool(_) => json!("yes"),
            Value::Array(_) => json!("not a list"),
            _ => json!([1, 2]),
        };
        let mut cases: Vec<(&str, Value)> = vec![
            ("wrong type", wrong_type),
            ("wrong type (object)", json!({"x": 1})),
            ("out of range (-1)", json!(-1)),
            ("out of range (1e308)", json!(1e308)),
            ("out of range (2^64)", json!(18446744073709551616.0_f64)),
        ];
        for (class, text) in text_classes() {
            // Tags are a list; its items get the text.
            let value = if field == "tags" { json!([text]) } else { json!(text) };
            cases.push((class, value));
        }
        for (class, value) in cases {
            let free_text = FREE_TEXT.contains(&field.as_str()) && value.is_string() != (field == "tags");
            // A huge number can be a legal value (no upper bound on e.g. gradient clipping).
            let may_accept = class.starts_with("out of range (1e308")
                || class == "out of range (2^64)"
                || (free_text && class != "huge (1 MB)");
            let reply = f.app.post_json("/api/runs", &with_field(&field, value.clone())).await;
            let outcome = Outcome {
                what: format!("POST /api/runs {field} = {class}"),
                field: Some(&field),
                may_accept,
            };
            if reply.status == StatusCode::CREATED && field == "name" {
                let id = new_runs(&f, &before).pop().unwrap();
                assert_eq!(
                    Value::String(f.store().run(&id).unwrap().unwrap().name),
                    value,
                    "stored verbatim"
                );
            }
            judge(&f, &mut tally, class, &reply, &before, outcome);
        }
    }
    // The body as a whole: not JSON, not an object, the wrong content type, trailing NUL.
    for (class, content_type, body) in [
        ("malformed JSON", "application/json", "{\"model\": ".to_string()),
        ("not an object", "application/json", "[1, 2]".to_string()),
        ("not JSON", "text/plain", "model=resnet-18".to_string()),
        (
            "NUL in body",
            "application/json",
            "{\"name\": \"a\u{0}\"}\u{0}".to_string(),
        ),
    ] {
        let reply = f.app.post("/api/runs", content_type, body).await;
        let outcome = Outcome {
            what: format!("POST /api/runs {class}"),
            field: None,
            may_accept: false,
        };
        judge(&f, &mut tally, "malformed body", &reply, &before, outcome);
    }
    tally.print("POST /api/runs");
}

/// What a browser submits for the new-run form as rendered: every input's value, ticked
/// checkboxes, each select's chosen option.
fn default_form(page: &str) -> Vec<(String, String)> {
    let start = page.find("<form id=\"new-run\"").expect("the new-run form");
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        let value = &tag[start..start + tag[start..].find('"')?];
        Some(
            value
                .replace("&#34;", "\"")
                .replace("&#39;", "'")
                .replace("&#60;", "<")
                .replace("&#62;", ">")
                .replace("&#38;", "&"),
        )
    };
    let mut fields = Vec::new();
    for piece in form.split('<').skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if tag.starts_with("input") {
            let Some(name) = attribute(tag, "name") else { continue };
            let checkbox = attribute(tag, "type").as_deref() == Some("checkbox");
            if !checkbox || tag.contains(" checked") {
                fields.push((name, attribute(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("select") {
            let name = attribute(tag, "name").unwrap();
            let rest = &form[form.find(tag).unwrap()..];
            let options = &rest[..rest.find("</select>").unwrap()];
            let chosen = options
                .split("<option")
                .skip(1)
                .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
                .or_else(|| options.split("<option").nth(1))
                .and_then(|o| attribute(&o[..o.find('>').unwrap()], "value"))
                .unwrap_or_default();
            fields.push((name, chosen));
        }
    }
    fields
}

#[tokio::test]
async fn new_run_form_refuses_bad_values_of_every_field_by_name() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    let page = f.app.get("/runs/new").await;
    let form = default_form(page.text());
    assert!(form.len() > 30, "the form lists every config field: {form:?}");
    // The form as rendered is valid (and is the base every case edits).
    let baseline = f.app.post("/runs", FORM, encode_form(&form)).await;
    assert_eq!(baseline.status, StatusCode::SEE_OTHER, "{}", baseline.short());
    let before = f.snapshot();
    let names: Vec<String> = form.iter().map(|(name, _)| name.clone()).collect();
    for field in &names {
        let checkbox = page
            .text()
            .contains(&format!("<input type=\"checkbox\" id=\"f-{field}\""));
        let mut cases: Vec<(&str, String)> = vec![
            ("wrong type", "abc".into()),
            ("out of range (-1)", "-1".into()),
            ("out of range (1e308)", "1e308".into()),
            ("out of range (2^64)", "18446744073709551616".into()),
        ];
        cases.extend(text_classes());
        for (class, value) in cases {
            let edited: Vec<(String, String)> = form
                .iter()
                .map(|(k, v)| (k.clone(), if k == field { value.clone() } else { v.clone() }))
                .collect();
            // A ticked checkbox is "on" whatever it sends; an empty optional field means "not
            // set"; names and tags are free text; a huge number can be legal (no upper bound).
            let may_accept = checkbox
                || class == "empty"
                || class.starts_with("out of range (1e308")
                || class == "out of range (2^64)"
                || (FREE_TEXT.contains(&field.as_str()) && class != "huge (1 MB)");
            let reply = f.app.post("/runs", FORM, encode_form(&edited)).await;
            let outcome = Outcome {
                what: format!("POST /runs {field} = {class}"),
                field: Some(field),
                may_accept,
            };
            judge(&f, &mut tally, class, &reply, &before, outcome);
        }
    }
    // Bodies a browser would never send.
    for (class, content_type, body) in [
        (
            "bad percent-encoding",
            "application/x-www-form-urlencoded",
            "epochs=%ZZ&name=%",
        ),
        ("JSON to the form", "application/json", "{\"epochs\": 1}"),
        ("no content type", "", "epochs=1"),
    ] {
        let reply = if content_type.is_empty() {
            let request = from_page(Method::POST, "/runs")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from(body))
                .unwrap();
            f.app.send(request).await
        } else {
            f.app.post("/runs", content_type, body).await
        };
        let outcome = Outcome {
            what: format!("POST /runs {class}"),
            field: None,
            may_accept: false,
        };
        judge(&f, &mut tally, "malformed body", &reply, &before, outcome);
    }
    tally.print("POST /runs");
}

#[tokio::test]
async fn run_meta_refuses_bad_values_and_stores_accepted_ones_verbatim() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    let uri = format!("/runs/{}/meta", f.done);
    let original = f.store().run(&f.done).unwrap().unwrap();
    let before = f.snapshot();
    for field in ["name", "tags", "notes"] {
        for (class, value) in text_classes() {
            let reply = f.app.post_form(&uri, &[(field, &value)]).await;
            let what = format!("POST /runs/{{id}}/meta {field} = {class}");
            if reply.status.is_redirection() {
                // Accepted: stored as given (trimmed), then put back.
                let run = f.store().run(&f.done).unwrap().unwrap();
                let stored = match field {
                    "name" => run.name.clone(),
                    "tags" => run.tags.join(","),
                    _ => run.notes.clone(),
                };
                assert_eq!(stored, value.trim(), "{what}");
                assert!(
                    value.chars().count() <= 10_000,
                    "{what}: accepted a {} character value",
                    value.len()
                );
                f.store()
                    .update_meta(&f.done, &original.name, &original.tags, &original.notes)
                    .unwrap();
                f.assert_unchanged(&before, &what);
                tally.add(class, false);
                continue;
            }
            let outcome = Outcome {
                what,
                field: Some(field),
                may_accept: false,
            };
            judge(&f, &mut tally, class, &reply, &before, outcome);
        }
    }
    let reply = f.app.post(&uri, JSON, b"{\"name\": \"x\"}".to_vec()).await;
    let outcome = Outcome {
        what: "meta: JSON to the form".into(),
        field: None,
        may_accept: false,
    };
    judge(&f, &mut tally, "malformed body", &reply, &before, outcome);
    tally.print("POST /runs/{id}/meta");
}

#[tokio::test]
async fn dataset_form_refuses_bad_values_and_paths_out_of_place() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    let base = [
        ("name".to_string(), "fresh".to_string()),
        ("label_file".to_string(), f.fresh_labels.to_string_lossy().into_owned()),
        ("image_dir".to_string(), f.fresh_images.to_string_lossy().into_owned()),
        ("image_size".to_string(), "64".to_string()),
    ];
    let before = f.snapshot();
    // Links out of the data folders: a label file that is really /etc/passwd, an image folder
    // that is really the folder of a secret file.
    let root = f.app.root();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd.csv")).unwrap();
    std::os::unix::fs::symlink(f.secret.parent().unwrap(), root.join("linked-dir")).unwrap();
    let mut cases: Vec<(&str, &str, String)> = Vec::new();
    for (class, value) in text_classes() {
        for field in ["name", "label_file", "image_dir", "image_size"] {
            // An empty image folder means the label file's folder (valid); an empty size the default.
            if class == "empty" && (field == "image_dir" || field == "image_size") {
                continue;
            }
            cases.push((field, class, value.clone()));
        }
    }
    for (field, class, value) in [
        ("name", "reserved name", "new".to_string()),
        ("name", "reserved name", "demo".to_string()),
        ("name", "taken name", "small".to_string()),
        ("image_size", "wrong type", "abc".to_string()),
        ("image_size", "out of range (-1)", "-1".to_string()),
        ("image_size", "out of range (2^64)", "18446744073709551616".to_string()),
        ("image_size", "out of range (1e308)", "1e308".to_string()),
        ("label_file", "absolute path out of place", "/etc/passwd".to_string()),
        ("label_file", "folder, not a file", "/".to_string()),
        (
            "label_file",
            "link out of the data folder",
            root.join("passwd.csv").to_string_lossy().into_owned(),
        ),
        (
            "label_file",
            "path traversal (encoded)",
            "..%2F..%2Fetc%2Fpasswd".to_string(),
        ),
        ("image_dir", "absolute path out of place", "/".to_string()),
        ("image_dir", "a file, not a folder", "/etc/passwd".to_string()),
        (
            "image_dir",
            "link out of the data folder",
            root.join("linked-dir").to_string_lossy().into_owned(),
        ),
    ] {
        cases.push((field, class, value));
    }
    for (field, class, value) in cases {
        let form: Vec<(String, String)> = base
            .iter()
            .map(|(k, v)| (k.clone(), if k == field { value.clone() } else { v.clone() }))
            .collect();
        let reply = f.app.post("/datasets", FORM, encode_form(&form)).await;
        let outcome = Outcome {
            what: format!("POST /datasets {field} = {class}"),
            field: Some(field),
            may_accept: false,
        };
        judge(&f, &mut tally, class, &reply, &before, outcome);
        assert!(
            !reply.text().contains("TOP SECRET"),
            "nothing of the secret file is shown"
        );
    }
    tally.print("POST /datasets");
}

/// A multipart body; the `image` part is a file named x.png.
fn multipart(fields: &[(&str, &[u8])]) -> Vec<u8> {
    fields
        .iter()
        .fold(Multipart::new(), |body, (name, value)| {
            if *name == "image" {
                body.file("image", "x.png", "image/png", value)
            } else {
                body.field(name, value)
            }
        })
        .finish()
}

/// A PNG signature and header claiming `width` × `height`, without pixel data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 0, 0, 0, 0]);
    // The CRC is not checked before the size is.
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes
}

#[tokio::test]
async fn predict_refuses_bad_runs_images_and_oversized_uploads() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    let before = f.snapshot();
    let good = png(64, 7);
    let content_type = Multipart::content_type();
    let mut run_cases: Vec<(&str, String)> = text_classes();
    run_cases.push(("unknown run", "nope".into()));
    run_cases.push(("run without a checkpoint", f.running.clone()));
    let mut image_cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("wrong type (text)", b"hello, not an image".to_vec()),
        ("HTML injection", b"<script>alert(1)</script>".to_vec()),
        (
            "wrong type (SVG)",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
        ),
        ("NUL byte", vec![0; 4096]),
        ("truncated PNG", good[..good.len() / 2].to_vec()),
        ("out of range (100000² header)", png_header(100_000, 100_000)),
        ("out of range (0 × 0 header)", png_header(0, 0)),
        ("wrong type (JPEG signature only)", b"\xff\xd8\xff\xe0garbage".to_vec()),
        ("huge (1 MB)", vec![b'x'; 1 << 20]),
    ];
    // Over the 16 MiB upload limit: refused before the image is read.
    image_cases.push(("oversized upload (17 MiB)", vec![0x89; 17 << 20]));
    for api in [true, false] {
        let uri = if api { "/api/predict" } else { "/predict" };
        for (class, run) in &run_cases {
            let body = multipart(&[("run", run.as_bytes()), ("image", &good)]);
            let reply = f.app.post(uri, &content_type, body).await;
            let outcome = Outcome {
                what: format!("POST {uri} run = {class}"),
                field: api.then_some("run"),
                may_accept: false,
            };
            judge(&f, &mut tally, class, &reply, &before, outcome);
            // JSON errors may quote the id (served as JSON with nosniff); pages escape it.
            assert!(api || !reply.text().contains("<script>alert"), "escaped");
        }
        for (class, image) in &image_cases {
            let body = multipart(&[("run", f.done.as_bytes()), ("image", image)]);
            let reply = f.app.post(uri, &content_type, body).await;
            let outcome = Outcome {
                what: format!("POST {uri} image = {class}"),
                field: api.then_some("image"),
                may_accept: false,
            };
            judge(&f, &mut tally, class, &reply, &before, outcome);
        }
        for (class, content_type, body) in [
            (
                "no image field",
                content_type.clone(),
                multipart(&[("run", f.done.as_bytes())]),
            ),
            (
                "not multipart",
                "application/json".to_string(),
                b"{\"run\": 1}".to_vec(),
            ),
            (
                "broken multipart",
                content_type.clone(),
                format!(
                    "--{}\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                    Multipart::BOUNDARY
                )
                .into_bytes(),
            ),
        ] {
            let reply = f.app.post(uri, &content_type, body).await;
            let outcome = Outcome {
                what: format!("POST {uri} {class}"),
                field: None,
                may_accept: false,
            };
            judge(&f, &mut tally, "malformed body", &reply, &before, outcome);
        }
    }
    tally.print("POST /predict + /api/predict");
}

/// Ids that name no run: plain, SQL, HTML, NUL, Unicode, traversal (raw and encoded), 10k chars.
fn unknown_ids() -> Vec<String> {
    vec![
        "nope".into(),
        encode_component("' OR '1'='1"),
        encode_component("<script>alert(1)</script>"),
        "%00".into(),
        encode_component("é🚀"),
        "%2e%2e".into(),
        "..%2F..%2Fetc%2Fpasswd".into(),
        encode_component("../../etc/passwd"),
        "z".repeat(10_000),
    ]
}

#[tokio::test]
async fn unknown_ids_and_traversal_in_addresses_are_plain_404s() {
    let f = Fixture::new();
    let mut tally = Tally::default();
    let before = f.snapshot();
    let mut requests: Vec<(&str, Method, String)> = Vec::new();
    for id in unknown_ids() {
        for (method, path) in [
            (Method::GET, "/runs/{id}"),
            (Method::GET, "/runs/{id}/charts/loss.svg"),
            (Method::GET, "/runs/{id}/charts/confusion.svg?label=Effusion"),
            (Method::GET, "/runs/{id}/events"),
            (Method::GET, "/runs/{id}/predictions"),
            (Method::GET, "/runs/{id}/predictions/0/image.png"),
            (Method::GET, "/runs/{id}/delete"),
            (Method::POST, "/runs/{id}/delete"),
            (Method::POST, "/runs/{id}/cancel"),
            (Method::POST, "/runs/{id}/resume"),
            (Method::POST, "/runs/{id}/meta"),
            (Method::GET, "/api/runs/{id}"),
            (Method::DELETE, "/api/runs/{id}"),
            (Method::GET, "/api/runs/{id}/metrics.csv"),
            (Method::POST, "/api/runs/{id}/cancel"),
            (Method::POST, "/api/runs/{id}/resume"),
            (Method::GET, "/compare?runs={id}"),
            (Method::GET, "/compare/charts/val_loss.svg?runs={id}"),
            (Method::GET, "/datasets/{id}"),
            (Method::GET, "/datasets/{id}/labels.svg"),
            (Method::GET, "/datasets/{id}/thumbs/a.png.png"),
            (Method::POST, "/datasets/{id}/delete"),
            (Method::GET, "/api/datasets/{id}"),
            (Method::GET, "/predict/{id}"),
            (Method::GET, "/predict/{id}/image.png"),
            (Method::GET, "/predict/{id}/gradcam.png"),
        ] {
            requests.push(("unknown id", method, path.replace("{id}", &id)));
        }
    }
    // Traversal in the other path segments and in static files; there is no route that
    // downloads a checkpoint or any other file by name.
    let (done, running, set) = (&f.done, &f.running, &f.dataset);
    for path in [
        format!("/runs/{done}/charts/..%2F..%2FCargo.toml"),
        format!("/runs/{done}/charts/%2e%2e%2fsecret.svg"),
        format!("/runs/{running}/predictions/..%2F..%2F/image.png"),
        format!("/runs/{running}/predictions/-1/image.png"),
        format!("/runs/{running}/predictions/0/..%2F..%2FCargo.toml"),
        format!("/runs/{done}/predictions/99/..%2Fbest.json"),
        format!("/datasets/{set}/thumbs/..%2F..%2F..%2Foutside%2Fsecret.png.png"),
        format!("/datasets/{set}/thumbs/%2Fetc%2Fpasswd.png"),
        format!(
            "/datasets/{set}/thumbs/{}.png",
            encode_component(&f.secret.to_string_lossy())
        ),
        format!("/predict/{}/image.png", "0".repeat(63) + "%2F"),
        format!("/predict/{}/image.png", "A".repeat(64)),
        format!("/predict/{}/image.png", "0".repeat(64)),
        "/static/%2e%2e/Cargo.toml".to_string(),
        "/static/..%2F..%2FCargo.toml".to_string(),
        "/static/style.css%00.js".to_string(),
        "/static/".to_string(),
        format!("/ckpts/{done}/best.json"),
        format!("/runs/{done}/checkpoint"),
        "/data/cxr8.sqlite".to_string(),
    ] {
        requests.push(("path traversal", Method::GET, path));
    }
    for (class, method, uri) in requests {
        let reply = if method == Method::POST {
            f.app.post(&uri, FORM, "back=%2F").await
        } else {
            f.app.send_empty(method.clone(), &uri).await
        };
        let what = format!("{method} {}", uri.chars().take(120).collect::<String>());
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{what}: {}", reply.short());
        let html = reply.content_type().starts_with("text/html");
        assert!(
            html || reply.content_type().starts_with("application/json"),
            "{what}: {}",
            reply.content_type()
        );
        assert!(
            !html || !reply.text().contains("<script>alert"),
            "{what}: echoed unescaped"
        );
        assert!(
            !reply.text().contains("root:") && !reply.text().contains("TOP SECRET"),
            "{what}: leaked a file"
        );
        assert!(!reply.text().contains("[package]"), "{what}: leaked Cargo.toml");
        f.assert_unchanged(&before, &what);
        tally.add(class, true);
    }
    tally.print("unknown ids and traversal");
}

#[tokio::test]
async fn a_listed_image_that_is_a_link_out_or_corrupt_gets_no_server_error() {
    let f = Fixture::new();
    let before = f.snapshot();
    for name in ["s.png", "c.png"] {
        let reply = f.app.get(&format!("/datasets/{}/thumbs/{name}.png", f.dataset)).await;
        assert!(reply.status.is_client_error(), "{name}: {}", reply.short());
        assert!(
            reply.text().contains(name),
            "{name}: says which image: {}",
            reply.short()
        );
        assert!(!reply.text().contains("TOP SECRET"));
        f.assert_unchanged(&before, name);
    }
    // The good ones still work.
    assert_eq!(
        f.app
            .get(&format!("/datasets/{}/thumbs/a.png.png", f.dataset))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_a_run_while_it_trains_is_refused_and_loses_no_epoch() {
    let f = Fixture::new();
    let id = f.running.clone();
    // The trainer keeps committing epochs while deletes arrive from the page and the API.
    let store = f.app.store().clone();
    let trainer_id = id.clone();
    let trainer = tokio::task::spawn_blocking(move || {
        for epoch in 2..=40 {
            store
                .record_epoch(&trainer_id, epoch, &json!({"val_loss": 1.0 / epoch as f64}), None)
                .unwrap();
            store
                .append_event(&trainer_id, "epoch", &json!({"epoch": epoch}))
                .unwrap();
        }
    });
    let mut attempts = Vec::new();
    for i in 0..40 {
        let f = &f;
        let id = id.clone();
        attempts.push(async move {
            if i % 2 == 0 {
                f.app.send_empty(Method::DELETE, &format!("/api/runs/{id}")).await
            } else {
                f.app.post_form(&format!("/runs/{id}/delete"), &[]).await
            }
        });
    }
    let replies = futures::future::join_all(attempts).await;
    trainer.await.unwrap();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.short());
        assert!(reply.text().contains("cancel it first"), "{}", reply.short());
    }
    let epochs = f.store().epochs(&id).unwrap();
    assert_eq!(epochs.len(), 40, "every committed epoch is there");
    assert_eq!(
        epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<u32>>(),
        "once each, in order"
    );
    assert_eq!(f.store().events_after(&id, 0).unwrap().len(), 39);
    assert_eq!(f.store().integrity_check().unwrap(), "ok");

    // Once it has stopped, concurrent deletes remove it exactly once; the others find nothing.
    f.store().set_status(&id, RunStatus::Cancelled, None).unwrap();
    let mut attempts = Vec::new();
    for i in 0..10 {
        let f = &f;
        let id = id.clone();
        attempts.push(async move {
            if i % 2 == 0 {
                f.app.send_empty(Method::DELETE, &format!("/api/runs/{id}")).await
            } else {
                f.app.post_form(&format!("/runs/{id}/delete"), &[]).await
            }
        });
    }
    let replies = futures::future::join_all(attempts).await;
    let deleted = replies
        .iter()
        .filter(|r| r.status == StatusCode::NO_CONTENT || r.location() == Some("/"))
        .count();
    assert_eq!(deleted, 1, "{:?}", replies.iter().map(Reply::short).collect::<Vec<_>>());
    for reply in &replies {
        assert!(
            reply.status == StatusCode::NO_CONTENT
                || reply.status.is_redirection()
                || reply.status == StatusCode::NOT_FOUND,
            "{}",
            reply.short()
        );
    }
    assert!(f.store().run(&id).unwrap().is_none());
    assert!(f.store().run(&f.done).unwrap().is_some(), "the other runs stay");
    assert_eq!(f.store().epochs(&f.done).unwrap().len(), 2);
    assert_eq!(f.store().integrity_check().unwrap(), "ok");
}

//! Property tests (bounded, 256 seeded cases each): the label-file parser and the training-config
//! parser never panic on hostile input, what they accept is valid and round-trips, and the JSON
//! submit route never answers 5xx. Inputs come from a seeded ChaCha generator (already a
//! dependency), so every failure names a case that reruns identically; no shrinking.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use axum::http::Method;
use cxr8::data::table::LabelTable;
use cxr8::service;
use cxr8::store::{NewRun, Store};
use cxr8::train::config::{MAX_BATCH_SIZE, MAX_EPOCHS, MAX_IMAGE_SIZE, MAX_WIDTH, MIN_IMAGE_SIZE};
use cxr8::train::TrainConfig;
use cxr8::web::{FieldError, JobControl};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::util::{TestApp, FORM, HOST, JSON};

/// Cases per property: enough to hit the odd shapes, fast enough for every `cargo test`.
const CASES: u64 = 256;

type Gen = ChaCha8Rng;

/// Runs `property` on `CASES` inputs from `generate`, case `i` seeded with `seed + i`; a failure
/// or panic reports the case, its seed and its input.
fn check<T: Debug>(seed: u64, generate: impl Fn(&mut Gen) -> T, property: impl Fn(&T) -> Result<(), String>) {
    for case in 0..CASES {
        let mut rng = Gen::seed_from_u64(seed + case);
        let input = generate(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| property(&input)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!("case {case} (seed {}) failed: {message}\ninput: {input:?}", seed + case),
            Err(_) => panic!("case {case} (seed {}) panicked\ninput: {input:?}", seed + case),
        }
    }
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

const NIH: &str = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]
00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143
00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.171,0.171
00000003_000.png,Hernia|Effusion|Mass,0,3,74,F,PA,2500,2048,0.168,0.168
";

const ONE_HOT: &str = "id,subject_id,Hernia,Pleural_Thickening,No Finding,extra
a.png,1,1,0,0,x
b.png,1,0,1,0,y
c.png,2,0,0,1,z
";

/// Text pieces that matter to a CSV parser.
const CSV_PIECES: [&str; 16] = [
    ",",
    "\n",
    "\r\n",
    "\"",
    "|",
    " ",
    "\u{feff}",
    "No Finding",
    "Effusion",
    "id",
    "subject_id",
    "0",
    "1",
    "M",
    "é",
    "\0",
];

fn word(rng: &mut Gen) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.#[]-";
    (0..rng.random_range(1..9))
        .map(|_| *CHARS.choose(rng).unwrap() as char)
        .collect()
}

/// Any text: mostly printable ASCII, some of any Unicode scalar value.
fn any_text(rng: &mut Gen, max_chars: usize) -> String {
    (0..rng.random_range(0..=max_chars))
        .map(|_| {
            if rng.random_bool(0.8) {
                rng.random_range(' '..='~')
            } else {
                char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('\u{fffd}')
            }
        })
        .collect()
}

fn csv_like_text(rng: &mut Gen) -> String {
    (0..rng.random_range(0..60))
        .map(|_| {
            if rng.random_bool(0.6) {
                CSV_PIECES.choose(rng).unwrap().to_string()
            } else {
                word(rng)
            }
        })
        .collect()
}

/// One to four random edits of a valid file: delete a span, insert a CSV piece, duplicate or drop
/// a line.
fn edited(rng: &mut Gen, text: &str) -> String {
    let mut text = text.to_string();
    for _ in 0..rng.random_range(1..5) {
        let mut cut = rng.random_range(0..=text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let line_start = text[..cut].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[cut..].find('\n').map_or(text.len(), |i| cut + i + 1);
        match rng.random_range(0..4) {
            0 => {
                let mut end = (cut + rng.random_range(1..20)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(cut..end, "");
            }
            1 => text.insert_str(cut, CSV_PIECES.choose(rng).unwrap()),
            2 => {
                let line = text[line_start..line_end].to_string();
                text.insert_str(line_start, &line);
            }
            _ => text.replace_range(line_start..line_end, ""),
        }
    }
    text
}

/// Well-formed NIH files from random parts, so most cases are accepted and round-trip.
fn nih_file(rng: &mut Gen) -> String {
    const FINDINGS: [&str; 9] = [
        "Atelectasis",
        "Cardiomegaly",
        "Effusion",
        "Infiltration",
        "Mass",
        "Nodule",
        "Pneumonia",
        "Pneumothorax",
        "Hernia",
    ];
    let mut text = format!("{}\n", cxr8::data::demo::NIH_HEADER);
    for _ in 0..rng.random_range(1..30) {
        let (patient, follow) = (rng.random_range(0..50u32), rng.random_range(0..5u32));
        let labels: Vec<&str> = (0..rng.random_range(0..4))
            .map(|_| *FINDINGS.choose(rng).unwrap())
            .collect();
        let findings = if labels.is_empty() {
            "No Finding".to_string()
        } else {
            labels.join("|")
        };
        let age = rng.random_range(0..120u16);
        let sex = ["M", "F"].choose(rng).unwrap();
        let view = ["PA", "AP"].choose(rng).unwrap();
        text.push_str(&format!(
            "{patient:08}_{follow:03}.png,{findings},{follow},{patient},{age},{sex},{view},2500,2048,0.14,0.14\n"
        ));
    }
    text
}

/// Parses; when accepted, writes every row back out, reads that file and expects the same table.
fn parse_and_round_trip(text: &str) -> Result<(), String> {
    let Ok(table) = LabelTable::from_text("input.csv", text.to_string()) else {
        return Ok(());
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subset.csv");
    let all: Vec<usize> = (0..table.len()).collect();
    table
        .write_subset(&path, &all)
        .map_err(|e| format!("cannot write the subset: {e}"))?;
    let again = LabelTable::load(&path).map_err(|e| format!("written subset unreadable: {e}"))?;
    ensure(again.records == table.records, || {
        format!("records differ: {:?} vs {:?}", again.records, table.records)
    })?;
    ensure(again.labels == table.labels, || "labels differ".into())?;
    ensure(again.format == table.format && again.task == table.task, || {
        "format or task differs".into()
    })
}

#[test]
fn label_parser_survives_arbitrary_bytes() {
    check(
        1_000,
        |rng| {
            (0..rng.random_range(0..400))
                .map(|_| rng.random::<u8>())
                .collect::<Vec<u8>>()
        },
        |bytes| {
            let _ = LabelTable::from_text("input.csv", String::from_utf8_lossy(bytes).into_owned());
            Ok(())
        },
    );
}

#[test]
fn label_parser_survives_csv_like_text() {
    check(2_000, csv_like_text, |text: &String| parse_and_round_trip(text));
}

#[test]
fn label_parser_survives_edited_nih_files() {
    check(
        3_000,
        |rng| edited(rng, NIH),
        |text: &String| parse_and_round_trip(text),
    );
}

#[test]
fn label_parser_survives_edited_one_hot_files() {
    check(
        4_000,
        |rng| edited(rng, ONE_HOT),
        |text: &String| parse_and_round_trip(text),
    );
}

#[test]
fn accepted_nih_files_round_trip() {
    let accepted = Mutex::new(0);
    check(5_000, nih_file, |text| {
        if LabelTable::from_text("input.csv", text.to_string()).is_ok() {
            *accepted.lock().unwrap() += 1;
        }
        parse_and_round_trip(text)
    });
    // Duplicate image names are rejected by design; most generated files must still get through.
    let accepted = *accepted.lock().unwrap();
    assert!(
        accepted > CASES / 2,
        "only {accepted} of {CASES} generated NIH files were accepted"
    );
}

/// JSON values of every kind, with the numbers and strings that sit on the edges of the config's
/// ranges and options.
fn json_value(rng: &mut Gen, depth: u32) -> Value {
    const INTS: [i64; 15] = [
        0,
        1,
        -1,
        2,
        8,
        16,
        64,
        224,
        1024,
        1025,
        4096,
        4097,
        10_000,
        10_001,
        i64::MAX,
    ];
    const FLOATS: [f64; 11] = [0.0, 0.1, 0.5, 0.99, 1.0, -0.5, 1e-12, 1e308, -1e308, 8.0, 8.5];
    const STRINGS: [&str; 27] = [
        "",
        "resnet-18",
        "densenet-121",
        "simple-cnn",
        "mobilenet-v2",
        "sgd",
        "adam",
        "adamw",
        "bce",
        "mse",
        "focal",
        "cpu",
        "auto",
        "cuda",
        "patient",
        "official",
        "balanced",
        "demo",
        "cosine",
        "step",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "/etc/passwd",
        "名前",
        "\0",
        "1e3",
        "NaN",
    ];
    let kinds = if depth == 0 { 7 } else { 9 };
    match rng.random_range(0..kinds) {
        0 => Value::Null,
        1 => Value::from(rng.random_bool(0.5)),
        2 => Value::from(*INTS.choose(rng).unwrap()),
        3 => Value::from(*FLOATS.choose(rng).unwrap()),
        4 => Value::from(rng.random::<u64>()),
        5 => Value::from(*STRINGS.choose(rng).unwrap()),
        6 => Value::from(any_text(rng, 20)),
        7 => Value::from(
            (0..rng.random_range(0..4))
                .map(|_| json_value(rng, depth - 1))
                .collect::<Vec<_>>(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (word(rng), json_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A config object: the defaults with a few of its own fields (or aliases, or an unknown one)
/// replaced or removed — or, one time in four, any JSON value.
fn config_json(rng: &mut Gen) -> Value {
    let mut object = serde_json::to_value(TrainConfig::default()).unwrap();
    if rng.random_bool(0.25) {
        return json_value(rng, 2);
    }
    let mut names: Vec<String> = object.as_object().unwrap().keys().cloned().collect();
    names.extend(["model", "learning_rate", "unknown_field"].map(String::from));
    let map = object.as_object_mut().unwrap();
    for _ in 0..rng.random_range(0..6) {
        let name = names.choose(rng).unwrap().clone();
        if rng.random_bool(0.2) {
            map.remove(&name);
        } else {
            map.insert(name, json_value(rng, 2));
        }
    }
    object
}

fn check_accepted(config: &TrainConfig) -> Result<(), String> {
    ensure(config.validate().is_ok(), || "accepted but validate() fails".into())?;
    let in_range = (1..=MAX_EPOCHS).contains(&config.epochs)
        && (1..=MAX_BATCH_SIZE).contains(&config.batch_size)
        && (MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&config.image_size)
        && config.lr.is_finite()
        && config.lr > 0.0
        && config.width > 0.0
        && config.width <= MAX_WIDTH
        && [config.val_fraction, config.test_fraction, config.dropout]
            .iter()
            .all(|f| (0.0..1.0).contains(f))
        && config.max_images != Some(0);
    ensure(in_range, || format!("accepted an out-of-range value: {config:?}"))?;
    // What was accepted is stored as JSON and read back when a run resumes.
    let stored = serde_json::to_string(config).unwrap();
    let reread = TrainConfig::from_json(&stored).map_err(|e| format!("stored config unreadable: {e:?}"))?;
    ensure(&reread == config, || format!("stored config reads back as {reread:?}"))
}

#[test]
fn config_parser_accepts_only_valid_configs() {
    let accepted = Mutex::new(0);
    check(6_000, config_json, |value| {
        match TrainConfig::from_json(&value.to_string()) {
            Ok(config) => {
                *accepted.lock().unwrap() += 1;
                check_accepted(&config)
            }
            Err(errors) => ensure(!errors.is_empty(), || "rejected without saying why".into()),
        }
    });
    let accepted = *accepted.lock().unwrap();
    assert!(
        accepted > 0 && accepted < CASES,
        "{accepted} of {CASES} accepted: both outcomes must be tried"
    );
}

#[test]
fn config_parser_survives_arbitrary_text() {
    check(
        7_000,
        |rng| any_text(rng, 200),
        |text| match TrainConfig::from_json(text) {
            Ok(config) => check_accepted(&config),
            Err(_) => Ok(()),
        },
    );
}

/// The engine's submit path without the training: parse and validate, then queue in the store.
struct ParsingJobs {
    store: Arc<Store>,
    queued: Mutex<usize>,
}

impl JobControl for ParsingJobs {
    fn submit(&self, config: Value) -> Result<String, Vec<FieldError>> {
        let parsed = TrainConfig::from_json(&config.to_string()).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| FieldError::new(e.field, e.message))
                .collect::<Vec<_>>()
        })?;
        *self.queued.lock().unwrap() += 1;
        Ok(self
            .store
            .create_run(&NewRun {
                name: parsed.name.as_deref().unwrap_or("run"),
                config: &config,
                dataset: "demo",
                model: "resnet-18",
                image_size: parsed.image_size,
                epochs_planned: parsed.epochs as u32,
                tags: &parsed.tags,
            })
            .unwrap())
    }
    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        Err(service::Error::UnknownRun(id.into()))
    }
    fn resume(&self, id: &str) -> Result<(), service::Error> {
        Err(service::Error::UnknownRun(id.into()))
    }
    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The app over an in-memory store with [`ParsingJobs`], and a runtime to drive it from a
/// property's closure.
struct RouteFixture {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    jobs: Arc<ParsingJobs>,
}

impl RouteFixture {
    fn new() -> RouteFixture {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let setup = TestApp::in_memory();
        let jobs = Arc::new(ParsingJobs {
            store: setup.store(),
            queued: Mutex::new(0),
        });
        RouteFixture {
            runtime,
            app: setup.jobs(jobs.clone()).build(),
            jobs,
        }
    }
}

#[test]
fn submit_route_never_answers_5xx() {
    let RouteFixture { runtime, app, jobs } = RouteFixture::new();
    let store = app.store();
    let created = Mutex::new(0u64);
    let body = |rng: &mut Gen| {
        if rng.random_bool(0.75) {
            config_json(rng).to_string()
        } else {
            any_text(rng, 100)
        }
    };
    check(8_000, body, |body| {
        let headers = [("host", HOST), ("content-type", JSON)];
        let status = runtime
            .block_on(app.request(Method::POST, "/api/runs", &headers, body.clone()))
            .status;
        if status.as_u16() == 201 {
            *created.lock().unwrap() += 1;
        }
        ensure(status.as_u16() == 201 || status.is_client_error(), || {
            format!("answered {status}")
        })
    });
    let created = *created.lock().unwrap();
    assert_eq!(
        created as usize,
        *jobs.queued.lock().unwrap(),
        "every 201 queued exactly one run"
    );
    assert_eq!(
        store.runs().unwrap().len(),
        created as usize,
        "nothing stored for a rejected body"
    );
    assert!(
        created > 0 && created < CASES,
        "{created} of {CASES} accepted: both outcomes must be tried"
    );
}

/// A form field's value: the edges of the config's ranges and options, hostile strings, any text.
fn form_value(rng: &mut Gen) -> String {
    const PIECES: [&str; 24] = [
        "",
        " ",
        "0",
        "1",
        "-1",
        "0.5",
        "1e-3",
        "1e400",
        "NaN",
        "inf",
        "64",
        "4097",
        "18446744073709551616",
        "resnet-18",
        "sgd",
        "demo",
        "true",
        "on",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "/etc/passwd",
        "名前",
        "a,b,,c",
        "\0",
    ];
    if rng.random_bool(0.7) {
        PIECES.choose(rng).unwrap().to_string()
    } else {
        any_text(rng, 40)
    }
}

/// The new-run form as a browser posts it (`POST /runs`, urlencoded): what the page renders with
/// its defaults, with a few fields replaced, removed, repeated or added. Also 1 in 8 arbitrary
/// bodies. Never a 5xx: a run is created and redirected to (303), or the form comes back (422)
/// saying what is wrong, or the body is refused (400); a rejected form stores nothing.
#[test]
fn form_route_never_answers_5xx() {
    let RouteFixture { runtime, app, jobs } = RouteFixture::new();
    let store = app.store();
    let page = runtime.block_on(app.get("/runs/new"));
    assert_eq!(page.status, 200);
    let page = page.text();
    let defaults = crate::web_form::scrape_form(page);
    assert!(defaults.len() > 30, "the form has its fields: {defaults:?}");

    let body = |rng: &mut Gen| {
        if rng.random_bool(0.125) {
            return any_text(rng, 200);
        }
        let mut fields = defaults.clone();
        for _ in 0..rng.random_range(1..5) {
            let at = rng.random_range(0..fields.len());
            match rng.random_range(0..10) {
                0 => {
                    fields.remove(at);
                }
                1 => fields.push((fields[at].0.clone(), form_value(rng))),
                2 => fields.push((word(rng), form_value(rng))),
                _ => fields[at].1 = form_value(rng),
            }
            if fields.is_empty() {
                break;
            }
        }
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        crate::util::encode_form(&pairs)
    };
    let outcomes = Mutex::new([0u64; 3]);
    check(9_000, body, |body| {
        let before = store.runs().unwrap().len();
        let reply = runtime.block_on(app.post("/runs", FORM, body.clone()));
        let (status, location, page) = (reply.status.as_u16(), reply.location(), reply.text());
        let after = store.runs().unwrap().len();
        match status {
            303 => {
                outcomes.lock().unwrap()[0] += 1;
                let location = location.unwrap_or_default();
                let id = location.strip_prefix("/runs/").unwrap_or_default();
                ensure(after == before + 1 && store.run(id).unwrap().is_some(), || {
                    format!("303 to '{location}' but {before} → {after} runs stored")
                })
            }
            422 => {
                outcomes.lock().unwrap()[1] += 1;
                ensure(after == before, || "a rejected form stored a run".into())?;
                ensure(
                    page.contains("id=\"form-errors\"") && page.contains("<form id=\"new-run\""),
                    || "422 without the form and its messages".into(),
                )
            }
            400 => {
                outcomes.lock().unwrap()[2] += 1;
                ensure(after == before, || "a refused body stored a run".into())
            }
            other => Err(format!("answered {other}: {}", &page[..page.len().min(300)])),
        }
    });
    let [created, rejected, refused] = *outcomes.lock().unwrap();
    assert_eq!(
        created as usize,
        *jobs.queued.lock().unwrap(),
        "every 303 queued exactly one run"
    );
    assert!(
        created > 0 && rejected > 0,
        "{created} created, {rejected} rejected, {refused} refused: both outcomes must be tried"
    );
}

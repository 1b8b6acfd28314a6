//! Data set pages and registration: the add form's validation, the list and detail pages, charts,
//! thumbnails (and that nothing outside a data set can be read through them), the cache build
//! that training reuses, the `cxr8 dataset add|list|remove` commands, and the real NIH files.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::{header, StatusCode};
use cxr8::data::LabelTable;
use cxr8::service::datasets::{self, Registration};
use cxr8::store::Store;
use serde_json::Value;

use crate::util::{encode_component, nih_dir, TestApp};

/// The dashboard over a store on disk (data sets live in the data folder), with room for the
/// label files and image folders the tests register.
struct Fixture {
    app: TestApp,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            app: TestApp::on_disk().build(),
        }
    }

    /// A one-hot label file naming a.png … (one per `rows`), and an image folder holding the
    /// first `present` of them as 40×40 gray PNGs.
    fn files(&self, rows: usize, present: usize) -> (PathBuf, PathBuf) {
        let base = self.app.root().join(format!("set-{rows}-{present}"));
        let images = base.join("imgs");
        std::fs::create_dir_all(&images).unwrap();
        let mut csv = String::from("id,subject_id,Atelectasis,Effusion\n");
        for i in 0..rows {
            let name = format!("{}.png", (b'a' + i as u8) as char);
            csv.push_str(&format!("{name},{},{},{}\n", i / 2, i % 2, (i + 1) % 2));
            if i < present {
                image::GrayImage::from_fn(40, 40, |x, y| image::Luma([(x * 6 + y + i as u32 * 10) as u8]))
                    .save(images.join(&name))
                    .unwrap();
            }
        }
        let labels = base.join("labels.csv");
        std::fs::write(&labels, csv).unwrap();
        (labels, images)
    }

    /// Waits (bounded) until the data set's cache build has finished; returns its state.
    async fn cache_when_done(&self, name: &str) -> Value {
        for _ in 0..1200 {
            let cache = self.app.get(&format!("/api/datasets/{name}")).await.json()["cache"].clone();
            if cache["state"] != "building" {
                return cache;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the cache build of '{name}' did not finish");
    }
}

/// NIH-CXR-LT-style split files: train (a–d), val (e, f; its label columns in the other order)
/// and test (g, h), with every image present; the test file's last patient also has a training
/// image. Returns the three files and the image folder.
fn split_files(root: &Path) -> ([PathBuf; 3], PathBuf) {
    let base = root.join("split-set");
    let images = base.join("imgs");
    std::fs::create_dir_all(&images).unwrap();
    // (file, label columns, rows as (image stem, patient, the two label values)).
    type Part<'a> = (&'a str, &'a str, &'a [(&'a str, u32, [u8; 2])]);
    let parts: [Part; 3] = [
        (
            "train.csv",
            "Atelectasis,Effusion",
            &[("a", 1, [1, 0]), ("b", 1, [0, 1]), ("c", 2, [1, 1]), ("d", 3, [0, 1])],
        ),
        ("val.csv", "Effusion,Atelectasis", &[("e", 4, [1, 0]), ("f", 5, [0, 1])]),
        (
            "test.csv",
            "Atelectasis,Effusion",
            &[("g", 6, [1, 0]), ("h", 3, [0, 1])],
        ),
    ];
    let mut files = Vec::new();
    for (i, (file, header, rows)) in parts.into_iter().enumerate() {
        let mut csv = format!("id,subject_id,{header}\n");
        for (j, (name, patient, [x, y])) in rows.iter().enumerate() {
            csv.push_str(&format!("{name}.png,{patient},{x},{y}\n"));
            image::GrayImage::from_fn(40, 40, |u, v| image::Luma([(u * 5 + v + (i * 4 + j) as u32 * 9) as u8]))
                .save(images.join(format!("{name}.png")))
                .unwrap();
        }
        let path = base.join(file);
        std::fs::write(&path, csv).unwrap();
        files.push(path);
    }
    (files.try_into().unwrap(), images)
}

#[tokio::test]
async fn a_data_set_given_as_train_val_test_files_is_registered_shown_and_trained_as_given() {
    let fx = Fixture::new();
    let ([train, val, test], images) = split_files(fx.app.root());
    let (other_labels, _) = fx.files(2, 0);
    std::fs::write(&other_labels, "id,subject_id,Hernia\ne.png,4,1\n").unwrap();
    let app = &fx.app;
    let post = |val: &Path, test: Option<&Path>| {
        let fields = [
            ("name", "lt".to_string()),
            ("label_file", path_text(&train).to_string()),
            ("val_label_file", path_text(val).to_string()),
            ("test_label_file", test.map(path_text).unwrap_or("").to_string()),
            ("image_dir", path_text(&images).to_string()),
            ("image_size", "64".to_string()),
        ];
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.post_form("/datasets", &fields).await
        }
    };
    // Only one of the two files, or a file with other labels: refused next to its field.
    let half = post(&val, None).await;
    assert_eq!(half.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(half.text().contains(r#"id="test_label_file-error""#), "{}", half.text());
    assert!(half
        .text()
        .contains("needs both the validation and the test label file"));
    let mismatched = post(&other_labels, Some(&test)).await;
    assert_eq!(mismatched.status, StatusCode::UNPROCESSABLE_ENTITY);
    let text = mismatched.text();
    let error = &text[text.find(r#"id="val_label_file-error""#).expect("val field error")..];
    assert!(error.contains("Hernia"), "{error}");
    assert!(fx.app.state.store.dataset("lt").unwrap().is_none(), "nothing stored");

    let added = post(&val, Some(&test)).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text());
    let cache = fx.cache_when_done("lt").await;
    assert_eq!(
        (cache["state"].as_str(), cache["done"].as_u64()),
        (Some("ready"), Some(8)),
        "all three files cached"
    );
    let page = fx.app.get("/datasets/lt").await.text().to_owned();
    for expected in [
        "Validation label file",
        "as given by the files: 4 training, 2 validation and 2 test images",
        "1 patients have images in both the train and the test file",
    ] {
        assert!(page.contains(expected), "missing {expected:?}: {page}");
    }
    let api = fx.app.get("/api/datasets/lt").await.json();
    assert!(api["val_label_file"].as_str().unwrap().ends_with("val.csv"), "{api}");

    // A run on it trains on the three files as given.
    let mut config = cxr8::train::TrainConfig {
        dataset: Some("lt".into()),
        ..Default::default()
    };
    cxr8::service::runs::resolve_dataset(&fx.app.state.store, &mut config).unwrap();
    assert_eq!(
        config.labels.as_deref(),
        Some(std::fs::canonicalize(&train).unwrap().as_path())
    );
    assert_eq!(
        config.val_labels.as_deref(),
        Some(std::fs::canonicalize(&val).unwrap().as_path())
    );
    assert_eq!(
        config.test_labels.as_deref(),
        Some(std::fs::canonicalize(&test).unwrap().as_path())
    );
}

#[test]
fn the_cli_adds_a_data_set_given_as_three_files() {
    let fx = Fixture::new();
    let ([train, val, test], images) = split_files(fx.app.root());
    let data_dir = fx.app.root().join("cli-split");
    let base = [
        "dataset",
        "add",
        "lt",
        "--labels",
        path_text(&train),
        "--images",
        path_text(&images),
    ];
    let mut half = base.to_vec();
    half.extend(["--val-labels", path_text(&val), "--data-dir", path_text(&data_dir)]);
    let refused = cxr8(&half);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--test-labels"));

    let mut full = base.to_vec();
    full.extend([
        "--val-labels",
        path_text(&val),
        "--test-labels",
        path_text(&test),
        "--data-dir",
        path_text(&data_dir),
    ]);
    let added = cxr8(&full);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&added.stdout),
        String::from_utf8_lossy(&added.stderr),
    );
    assert!(added.status.success(), "{stderr}");
    assert!(stdout.contains("split as given: 4 train, 2 validation"), "{stdout}");
    assert!(
        stderr.contains("warning: 1 patients have images in both the train and the test file"),
        "{stderr}"
    );
    let row = Store::open(&data_dir).unwrap().dataset("lt").unwrap().unwrap();
    let files = row.split_files.expect("split files stored");
    assert!(files.val.ends_with("val.csv") && files.test.ends_with("test.csv"));
}

fn path_text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn the_add_form_rejects_each_bad_input_next_to_its_field_and_stores_nothing() {
    let fx = Fixture::new();
    let (labels, images) = fx.files(3, 3);
    let (some_labels, some_images) = fx.files(4, 2);
    let (_, empty_images) = fx.files(3, 0);
    let no_image_column = fx.app.root().join("no_image_column.csv");
    std::fs::write(&no_image_column, "Finding Labels,Patient ID\nEffusion,1\n").unwrap();
    datasets::register(
        &fx.app.state.store,
        &Registration {
            name: "taken".into(),
            label_file: path_text(&labels).into(),
            image_dir: path_text(&images).into(),
            allow_missing: false,
            ..Default::default()
        },
    )
    .unwrap();

    let labels = path_text(&labels);
    let images = path_text(&images);
    let cases: [(&str, &str, &str, &str, &str); 9] = [
        ("bad!name", labels, images, "name-error", "&#39;!&#39; is not allowed"),
        ("demo", labels, images, "name-error", "reserved"),
        ("taken", labels, images, "name-error", "already exists"),
        ("x", "/no/such/labels.csv", images, "label_file-error", "no such file"),
        ("x", images, images, "label_file-error", "is a folder"),
        (
            "x",
            path_text(&no_image_column),
            images,
            "label_file-error",
            "line 1, column &#39;Image Index&#39;: missing column",
        ),
        ("x", labels, "/no/such/folder", "image_dir-error", "no such folder"),
        (
            "x",
            labels,
            path_text(&empty_images),
            "image_dir-error",
            "none of the 3 images",
        ),
        (
            "x",
            path_text(&some_labels),
            path_text(&some_images),
            "allow_missing-error",
            "2 of 4 images are missing",
        ),
    ];
    for (name, label_file, image_dir, error_id, message) in cases {
        let reply = fx
            .app
            .post_form(
                "/datasets",
                &[("name", name), ("label_file", label_file), ("image_dir", image_dir)],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name} {label_file} {image_dir}"
        );
        let html = reply.text();
        let at = html
            .find(&format!("id=\"{error_id}\""))
            .unwrap_or_else(|| panic!("no {error_id} for {label_file}: {html}"));
        assert!(
            html[at..].contains(message),
            "{error_id}: expected '{message}' in {html}"
        );
        // The typed values come back so the user can fix them.
        assert!(html.contains(&format!("value=\"{}\"", label_file.replace('\'', "&#39;"))));
    }
    let bad_size = fx
        .app
        .post_form(
            "/datasets",
            &[
                ("name", "ok"),
                ("label_file", labels),
                ("image_dir", images),
                ("image_size", "9"),
            ],
        )
        .await;
    assert_eq!(bad_size.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_size.text().contains("id=\"image_size-error\""));
    let names: Vec<String> = fx
        .app
        .state
        .store
        .datasets()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["taken"], "nothing but the fixture's own registration is stored");

    // With the explicit choice the partly missing set is accepted.
    let allowed = fx
        .app
        .post_form(
            "/datasets",
            &[
                ("name", "partial"),
                ("label_file", path_text(&some_labels)),
                ("image_dir", path_text(&some_images)),
                ("allow_missing", "on"),
                ("image_size", "64"),
            ],
        )
        .await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER, "{}", allowed.text());
    let cache = fx.cache_when_done("partial").await;
    assert_eq!(cache["state"], "ready", "{cache}");
    assert_eq!(cache["done"], 2);
}

#[tokio::test]
async fn a_registered_data_set_gets_pages_charts_thumbnails_and_the_cache_training_uses() {
    let fx = Fixture::new();
    let (labels, images) = fx.files(3, 3);
    assert_eq!(fx.app.get("/datasets/new").await.status, StatusCode::OK);
    let reply = fx
        .app
        .post_form(
            "/datasets",
            &[
                ("name", "small"),
                ("label_file", path_text(&labels)),
                ("image_dir", path_text(&images)),
                ("image_size", "64"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(reply.location(), Some("/datasets/small"));

    // The page works before the build is done: a progress bar with the state at render time.
    let page = fx.app.get("/datasets/small").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("<progress id=\"cache-progress\""), "{html}");
    assert!(html.contains("/static/datasets.js"));

    let cache = fx.cache_when_done("small").await;
    assert_eq!(cache["state"], "ready", "{cache}");
    assert_eq!((cache["done"].as_u64(), cache["size"].as_u64()), (Some(3), Some(64)));
    // Exactly where training looks for it: same key, same folder, the chosen size.
    let row = fx.app.state.store.dataset("small").unwrap().unwrap();
    let table = LabelTable::load(&row.label_file).unwrap();
    let cache_file = datasets::cache_path(&fx.app.state.data_dir, &table, 64);
    assert!(cache_file.is_file(), "no cache at {}", cache_file.display());
    assert_eq!(
        row.summary["cache"]["state"], "ready",
        "the outcome is stored with the row"
    );

    let html = fx.app.get("/datasets/small").await.text().to_owned();
    assert!(html.contains("ready at 64 px (3 images)"), "{html}");
    assert!(html.contains("<dt>Found on disk</dt><dd>3</dd>"), "{html}");
    assert!(html.contains("<dt>Patients</dt><dd>2</dd>"), "{html}");
    assert_eq!(html.matches("/datasets/small/thumbs/").count(), 3);

    let list = fx.app.get("/datasets").await.text().to_owned();
    assert!(list.contains("href=\"/datasets/small\""), "{list}");
    assert!(list.contains("cache-ready"), "{list}");
    let api = fx.app.get("/api/datasets").await.json();
    let small = api.as_array().unwrap().iter().find(|d| d["name"] == "small").unwrap();
    assert_eq!(small["summary"]["found"], 3);
    assert_eq!(small["summary"]["label_counts"]["Effusion"], 2);

    for chart in ["labels", "cooccurrence"] {
        let svg = fx.app.get(&format!("/datasets/small/{chart}.svg")).await;
        assert_eq!(svg.status, StatusCode::OK, "{chart}");
        assert_eq!(svg.content_type(), "image/svg+xml");
        assert!(svg.text().contains("<svg"), "{chart}");
        assert!(svg.text().contains("Effusion"), "{chart}");
    }

    let thumb = fx.app.get("/datasets/small/thumbs/a.png.png").await;
    assert_eq!(thumb.status, StatusCode::OK);
    assert_eq!(thumb.content_type(), "image/png");
    assert!(thumb.header(header::CACHE_CONTROL).unwrap_or("").contains("max-age"));
    let decoded = image::load_from_memory(&thumb.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (128, 128));

    // Filtering by label: rows 0 and 2 have Effusion, row 1 Atelectasis.
    let effusion = fx.app.get("/datasets/small?label=Effusion").await.text().to_owned();
    assert!(effusion.contains("thumbs/a.png.png") && effusion.contains("thumbs/c.png.png"));
    assert!(!effusion.contains("thumbs/b.png.png"));
    assert_eq!(
        fx.app.get("/datasets/small?label=Nothing").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        fx.app.get("/datasets/small?page=x").await.status,
        StatusCode::BAD_REQUEST
    );

    // Forgetting keeps the files; the page is gone.
    let forgotten = fx.app.post_form("/datasets/small/delete", &[]).await;
    assert_eq!(forgotten.status, StatusCode::SEE_OTHER);
    assert_eq!(fx.app.get("/datasets/small").await.status, StatusCode::NOT_FOUND);
    assert!(labels.is_file() && cache_file.is_file());
}

#[tokio::test]
async fn thumbnails_serve_only_images_the_label_file_lists() {
    let fx = Fixture::new();
    let (labels, images) = fx.files(2, 2);
    // A PNG in the folder that the label file does not list, and a secret beside it.
    image::GrayImage::new(8, 8).save(images.join("z.png")).unwrap();
    std::fs::write(fx.app.root().join("secret.png"), b"not for you").unwrap();
    datasets::register(
        &fx.app.state.store,
        &Registration {
            name: "small".into(),
            label_file: path_text(&labels).into(),
            image_dir: path_text(&images).into(),
            allow_missing: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        fx.app.get("/datasets/small/thumbs/a.png.png").await.status,
        StatusCode::OK
    );
    let secret = fx.app.root().join("secret.png");
    let attempts = [
        "/datasets/small/thumbs/z.png.png".to_string(),
        "/datasets/small/thumbs/a.png".to_string(),
        "/datasets/small/thumbs/..%2F..%2Fsecret.png.png".to_string(),
        "/datasets/small/thumbs/..%2F..%2F..%2Fsecret.png".to_string(),
        format!("/datasets/small/thumbs/{}.png", encode_component(path_text(&secret))),
        "/datasets/small/thumbs/%2Fetc%2Fpasswd.png".to_string(),
        "/datasets/nope/thumbs/a.png.png".to_string(),
    ];
    for uri in attempts {
        let reply = fx.app.get(&uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_ne!(reply.content_type(), "image/png", "{uri}");
    }
}

#[tokio::test]
async fn the_demo_is_listed_browsable_and_cannot_be_forgotten() {
    let fx = Fixture::new();
    assert_eq!(fx.app.get("/datasets/demo").await.status, StatusCode::NOT_FOUND);
    cxr8::data::demo::generate(&cxr8::data::demo::DemoConfig {
        out: fx.app.state.data_dir.join("demo"),
        images: 30,
        size: 32,
        seed: 7,
    })
    .unwrap();
    let list = fx.app.get("/datasets").await;
    assert_eq!(list.status, StatusCode::OK);
    let html = list.text();
    assert!(html.contains("href=\"/datasets/demo\""));
    assert!(html.contains("synthetic demo"));
    assert!(html.contains("<td class=\"num\">30</td>"), "{html}");

    let page = fx.app.get("/datasets/demo").await.text().to_owned();
    assert!(page.contains("<dt>Images (label rows)</dt><dd>30</dd>"), "{page}");
    // NIH-format files carry views, sex and age.
    assert!(page.contains("<dt>Views</dt>") && page.contains("<dt>Sex</dt>") && page.contains("<dt>Age (years)</dt>"));
    assert!(
        !page.contains("cache-progress"),
        "the demo is cached by training, per run size"
    );
    assert!(page.contains("/datasets/demo/thumbs/00000001_000.png.png"), "{page}");
    let thumb = fx.app.get("/datasets/demo/thumbs/00000001_000.png.png").await;
    assert_eq!(thumb.content_type(), "image/png");

    let refused = fx.app.post_form("/datasets/demo/delete", &[]).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(fx.app.get("/datasets/demo").await.status, StatusCode::OK);
    assert_eq!(fx.app.get("/api/datasets/demo").await.json()["summary"]["images"], 30);
    assert_eq!(fx.app.get("/api/datasets/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(fx.app.get("/datasets/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failed_cache_build_is_shown_and_keeps_the_registration() {
    let fx = Fixture::new();
    let (labels, images) = fx.files(2, 2);
    // Found by name, but not decodable: the registration passes, the cache build fails.
    std::fs::write(images.join("b.png"), b"this is no png").unwrap();
    let reply = fx
        .app
        .post_form(
            "/datasets",
            &[
                ("name", "broken"),
                ("label_file", path_text(&labels)),
                ("image_dir", path_text(&images)),
                ("image_size", "64"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let cache = fx.cache_when_done("broken").await;
    assert_eq!(cache["state"], "failed", "{cache}");
    assert!(cache["error"].as_str().unwrap().contains("b.png"), "{cache}");
    let html = fx.app.get("/datasets/broken").await.text().to_owned();
    assert!(html.contains("class=\"error\">"), "{html}");
    assert!(html.contains("b.png"));
    assert!(fx.app.state.store.dataset("broken").unwrap().is_some());
}

fn cxr8(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cxr8"))
        .args(args)
        .output()
        .expect("the cxr8 binary runs")
}

#[test]
fn the_cli_adds_lists_and_removes_data_sets() {
    let fx = Fixture::new();
    let (labels, images) = fx.files(3, 2);
    let data_dir = fx.app.root().join("cli-data");
    let data = path_text(&data_dir);
    let add = |extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "add",
            "mine",
            "--labels",
            path_text(&labels),
            "--images",
            path_text(&images),
            "--data-dir",
            data,
        ];
        args.extend_from_slice(extra);
        cxr8(&args)
    };
    let refused = add(&[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--allow-missing: 1 of 3 images are missing"),
        "{stderr}"
    );

    let added = add(&["--allow-missing"]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(String::from_utf8_lossy(&added.stdout).contains("3 images (2 found, 1 missing)"));
    let again = add(&["--allow-missing"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("NAME: a data set named 'mine' already exists"));

    let listed = cxr8(&["dataset", "list", "--json", "--data-dir", data]);
    assert!(listed.status.success());
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo", "mine"]);
    assert_eq!(rows[1]["summary"]["found"], 2);
    assert!(Path::new(rows[1]["label_file"].as_str().unwrap()).is_absolute());
    let table = cxr8(&["dataset", "list", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("mine"));

    let demo = cxr8(&["dataset", "remove", "demo", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&demo.stderr).contains("cannot be removed"));
    let removed = cxr8(&["dataset", "remove", "mine", "--data-dir", data]);
    assert!(removed.status.success());
    let gone = cxr8(&["dataset", "remove", "mine", "--data-dir", data]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no data set named 'mine'"));
    assert!(labels.is_file(), "files are never touched");
}

#[test]
fn the_real_nih_label_file_with_its_581_image_subset_needs_allow_missing() {
    let nih = nih_dir();
    let store = Store::open_in_memory().unwrap();
    let mut input = Registration {
        name: "nih-256".into(),
        label_file: path_text(&nih.join("Data_Entry_2017_v2020.csv.gz")).into(),
        image_dir: path_text(&nih.join("images_256")).into(),
        allow_missing: false,
        ..Default::default()
    };
    let problems = datasets::register(&store, &input).expect_err("most images are not in the subset");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "allow_missing");
    assert!(
        problems[0].message.contains("111539 of 112120 images are missing"),
        "{}",
        problems[0].message
    );
    assert!(store.datasets().unwrap().is_empty());

    input.allow_missing = true;
    let checked = datasets::register(&store, &input).unwrap();
    let s = &checked.summary;
    assert_eq!(
        (s.images, s.found, s.missing, s.patients),
        (112_120, 581, 111_539, 30_805)
    );
    assert_eq!(s.labels.len(), 14);
    assert_eq!(s.missing_examples.len(), 5);
    let row = store.dataset("nih-256").unwrap().unwrap();
    assert!(row.label_file.ends_with("Data_Entry_2017_v2020.csv.gz"));
    assert!(Path::new(&row.image_dir).is_absolute());
}

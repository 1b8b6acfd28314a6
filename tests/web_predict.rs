//! The Predict page, its JSON twin and a run's validation predictions, through `web::app` with
//! `oneshot`, against a tiny run really trained (tiny demo set, 64 px, 1 epoch) and recorded in a
//! store the way the dashboard's worker does it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cxr8::data::demo::{self, DemoConfig};
use cxr8::data::split::{self, SplitOptions};
use cxr8::data::LabelTable;
use cxr8::model::Architecture;
use cxr8::store::{NewRun, RunStatus, Store};
use cxr8::train::backend::{BackendKind, DeviceChoice};
use cxr8::train::checkpoint::Slot;
use cxr8::train::job::JobPaths;
use cxr8::train::predict::{CheckpointRef, Predictor};
use cxr8::train::runner::CancelHandle;
use cxr8::train::TrainConfig;
use image::GrayImage;
use serde_json::Value;

use crate::util::{encode_component, from_page, nih_dir, Multipart, Reply, TestApp};

/// One trained run shared by every test here (training is the slow part).
struct Trained {
    store: Arc<Store>,
    paths: JobPaths,
    config: TrainConfig,
    run: String,
    /// Queued, never trained: no checkpoint.
    untrained: String,
    images: PathBuf,
    labels: Vec<String>,
    thresholds: Vec<f32>,
    _tmp: tempfile::TempDir,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let report = demo::generate(&DemoConfig {
            out: tmp.path().join("demo"),
            images: 60,
            size: 64,
            seed: 3,
        })
        .unwrap();
        let paths = JobPaths {
            data_dir: tmp.path().join("data"),
            ckpt_dir: tmp.path().join("ckpts"),
        };
        let config = TrainConfig {
            name: Some("tiny <b>cnn</b>".into()),
            labels: Some(report.label_file.clone()),
            images: Some(report.out.join("images")),
            architecture: Architecture::SimpleCnn,
            width: 0.25,
            image_size: 64,
            epochs: 1,
            batch_size: 16,
            device: DeviceChoice::Cpu,
            ..TrainConfig::default()
        };
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        let store = Arc::new(Store::open(&paths.data_dir).unwrap());
        let run = cxr8::service::runs::submit(&store, &config, &paths).unwrap();
        cxr8::service::runs::execute(
            store.clone(),
            &run,
            &config,
            &paths,
            false,
            &CancelHandle::new(),
            cxr8::service::runs::Watchers::default(),
        )
        .unwrap();
        assert_eq!(store.run(&run).unwrap().unwrap().status, RunStatus::Done);
        let untrained = stored_run(&store, "waiting");
        let ckpt = CheckpointRef::locate(&run, &paths.ckpt_dir, Slot::Best).unwrap();
        let predictor = Predictor::load(&ckpt, &BackendKind::Cpu.device()).unwrap();
        Trained {
            store,
            config,
            run,
            untrained,
            images: report.out.join("images"),
            labels: predictor.labels().to_vec(),
            thresholds: predictor.thresholds().to_vec(),
            paths,
            _tmp: tmp,
        }
    })
}

/// A run in the store that has not trained (a simple-cnn at 64 px, one epoch planned).
fn stored_run(store: &Store, name: &str) -> String {
    store
        .create_run(&NewRun {
            name,
            config: &serde_json::json!({}),
            dataset: "demo",
            model: "simple-cnn",
            image_size: 64,
            epochs_planned: 1,
            tags: &[],
        })
        .unwrap()
}

/// A fresh app (fresh model cache) over the shared run.
fn app_for(t: &Trained) -> TestApp {
    TestApp::over(t.store.clone(), &t.paths.data_dir, &t.paths.ckpt_dir).build()
}

/// A multipart body: text fields, then an optional `image` file part.
fn multipart(fields: &[(&str, &str)], image: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = fields.iter().fold(Multipart::new(), |body, (name, value)| {
        body.field(name, value.as_bytes())
    });
    if let Some((file_name, bytes)) = image {
        body = body.file("image", file_name, "application/octet-stream", bytes);
    }
    body.finish()
}

/// An upload without `Content-Length`, so the body limit is met while streaming (the test of
/// the limit declares the length itself as well).
fn post_request(uri: &str, body: Vec<u8>) -> Request<Body> {
    from_page(Method::POST, uri)
        .header(header::CONTENT_TYPE, Multipart::content_type())
        .body(Body::from(body))
        .unwrap()
}

async fn post(app: TestApp, uri: &str, fields: &[(&str, &str)], image: Option<(&str, &[u8])>) -> Reply {
    app.send(post_request(uri, multipart(fields, image))).await
}

fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// A demo X-ray at 100 × 100 (not the model's 64), as PNG bytes.
fn demo_png(t: &Trained) -> Vec<u8> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&t.images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let image = image::open(&files[0])
        .unwrap()
        .resize_exact(100, 100, image::imageops::FilterType::Triangle);
    encode(&image, image::ImageFormat::Png)
}

/// Every `href`/`src` in a page that starts with `prefix`, unescaped.
fn links(page: &str, prefix: &str) -> Vec<String> {
    page.match_indices(&format!("\"{prefix}"))
        .map(|(at, _)| {
            let rest = &page[at + 1..];
            rest[..rest.find('"').unwrap()]
                .replace("&#38;", "&")
                .replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test]
async fn the_form_lists_runs_with_a_checkpoint_and_preselects() {
    let t = trained();
    let page = app_for(t).get("/predict").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("<form id=\"predict-form\" class=\"filters\" method=\"post\" action=\"/predict\" enctype=\"multipart/form-data\">"));
    assert!(html.contains("name=\"image\"") && html.contains("name=\"label\""));
    assert!(html.contains(&format!("<option value=\"{}\"", t.run)), "{html}");
    assert!(
        html.contains("tiny &#60;b&#62;cnn&#60;/b&#62; · simple-cnn · best AUROC"),
        "{html}"
    );
    assert!(
        !html.contains(&t.untrained),
        "a run without a checkpoint is not offered"
    );
    assert!(!html.contains(" selected>"));
    let page = app_for(t).get(&format!("/predict?run={}", t.run)).await;
    assert!(page.text().contains(&format!("<option value=\"{}\" selected>", t.run)));
    assert!(
        app_for(t).get("/").await.text().contains("href=\"/predict\""),
        "nav link"
    );
}

#[tokio::test]
async fn a_png_upload_shows_sorted_probabilities_thresholds_and_gradcam() {
    let t = trained();
    let png = demo_png(t);
    let reply = post(app_for(t), "/predict", &[("run", &t.run)], Some(("x.png", &png))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let html = reply.text();
    assert!(
        html.contains("Image 100 × 100 px, seen by the model at 64 × 64"),
        "{html}"
    );
    // Every label once, most probable first, each with its tuned threshold.
    let table = &html[html.find("id=\"probabilities\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let mut shown = Vec::new();
    for row in table.split("<tr").skip(2) {
        let cells: Vec<&str> = row
            .split("<td")
            .skip(1)
            .map(|c| {
                let c = &c[c.find('>').unwrap() + 1..];
                &c[..c.find('<').unwrap()]
            })
            .collect();
        shown.push((
            cells[0].to_string(),
            cells[1].parse::<f32>().unwrap(),
            cells[2].to_string(),
        ));
    }
    assert_eq!(shown.len(), t.labels.len(), "{table}");
    assert!(
        shown.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted high to low: {shown:?}"
    );
    for (label, threshold) in t.labels.iter().zip(&t.thresholds) {
        let row = shown
            .iter()
            .find(|r| &r.0 == label)
            .unwrap_or_else(|| panic!("{label} missing"));
        assert!(row.2.starts_with(&format!("{threshold:.4}")), "{label}: {row:?}");
    }

    // The overlay shown by default is the most probable label's whose map is not empty: every
    // label ranked above it is marked as having an empty map. It has the uploaded size; other
    // labels' pages are linked.
    let overlay = links(html, "/predict/")
        .into_iter()
        .find(|l| l.contains("/gradcam.png"))
        .unwrap();
    let shown_label = overlay[overlay.find("label=").unwrap() + 6..].replace("%20", " ");
    let rank = shown.iter().position(|r| r.0 == shown_label).unwrap();
    for (label, ..) in &shown[..rank] {
        let row = table
            .split("<tr")
            .find(|r| r.contains(&format!("<td>{label}</td>")))
            .unwrap();
        assert!(row.contains("empty-badge"), "{label} ranks above {shown_label}: {row}");
    }
    assert!(
        html.contains(&format!("<figcaption>Grad-CAM for {shown_label}")),
        "{html}"
    );
    assert!(
        html.contains("src=\"/predict/gradcam-scale.svg\""),
        "the colour scale is shown"
    );
    let sha = overlay.split('/').nth(2).unwrap().to_string();
    assert_eq!(sha.len(), 64);
    let stored = t.paths.data_dir.join("uploads").join(format!("{sha}.png"));
    assert_eq!(
        image::open(&stored).unwrap().color(),
        image::ColorType::L8,
        "stored as gray"
    );
    let image = app_for(t).get(&overlay).await.png();
    assert_eq!((image.width(), image.height()), (100, 100));

    let other = &shown.last().unwrap().0;
    let link = links(html, "/predict/")
        .into_iter()
        .find(|l| {
            l.contains("?run=") && l.ends_with(&format!("label={}", other.replace(' ', "%20"))) && !l.contains(".png")
        })
        .unwrap_or_else(|| panic!("no Grad-CAM link for {other}"));
    let page = app_for(t).get(&link).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains(&format!("<figcaption>Grad-CAM for {other}")));
    let other_overlay = app_for(t)
        .get(&format!(
            "/predict/{sha}/gradcam.png?run={}&label={}",
            t.run,
            other.replace(' ', "%20")
        ))
        .await
        .png();
    assert_eq!(other_overlay.width(), 100);
    let gray = app_for(t).get(&format!("/predict/{sha}/image.png")).await.png();
    assert_eq!((gray.width(), gray.height()), (100, 100));
}

#[tokio::test]
async fn a_jpeg_upload_works_and_the_api_answers_json() {
    let t = trained();
    let jpeg = encode(
        &image::load_from_memory(&demo_png(t)).unwrap(),
        image::ImageFormat::Jpeg,
    );
    let reply = post(app_for(t), "/predict", &[("run", &t.run)], Some(("x.jpg", &jpeg))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.text().contains("id=\"gradcam\""));

    let label = t.labels[0].clone();
    let reply = post(
        app_for(t),
        "/api/predict",
        &[("run", &t.run), ("label", &label.to_lowercase())],
        Some(("x.jpg", &jpeg)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["run"], t.run.as_str());
    assert_eq!(json["gradcam_label"], label.as_str(), "labels match case-insensitively");
    let labels = json["labels"].as_array().unwrap();
    assert_eq!(labels.len(), t.labels.len());
    let mut previous = f64::INFINITY;
    for entry in labels {
        let p = entry["probability"].as_f64().unwrap();
        let threshold = entry["threshold"].as_f64().unwrap();
        assert!(p <= previous && (0.0..=1.0).contains(&p), "{json}");
        assert_eq!(entry["positive"].as_bool().unwrap(), p >= threshold);
        let i = t
            .labels
            .iter()
            .position(|l| l == entry["label"].as_str().unwrap())
            .unwrap();
        assert_eq!(threshold as f32, t.thresholds[i]);
        previous = p;
    }
    let overlay = app_for(t).get(json["gradcam"].as_str().unwrap()).await.png();
    assert_eq!(overlay.width(), 100);

    let reply = post(app_for(t), "/api/predict", &[("run", "nope")], Some(("x.jpg", &jpeg))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["fields"][0]["field"], "run");
}

#[tokio::test]
async fn bad_uploads_re_render_the_form_with_a_message() {
    let t = trained();
    let png = demo_png(t);
    let huge = encode(
        &image::DynamicImage::ImageLuma8(GrayImage::new(5000, 5000)),
        image::ImageFormat::Png,
    );
    let run = t.run.as_str();
    // (what, form fields, uploaded file, status, text the answer must contain)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Option<(&'a str, &'a [u8])>,
        StatusCode,
        String,
    );
    let cases: Vec<Case> = vec![
        (
            "text file named .png",
            vec![("run", run)],
            Some(("notes.png", b"Image Index,Finding Labels\n".as_slice())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a PNG or JPEG image".into(),
        ),
        (
            "truncated PNG",
            vec![("run", run)],
            Some(("cut.png", &png[..png.len() / 2])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot be decoded".into(),
        ),
        (
            "5000² PNG",
            vec![("run", run)],
            Some(("big.png", &huge)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "5000 × 5000 pixels; at most 4096 × 4096".into(),
        ),
        (
            "no file",
            vec![("run", run)],
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "choose an image file".into(),
        ),
        (
            "unknown run",
            vec![("run", "nope")],
            Some(("x.png", &png)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no run with id &#39;nope&#39;".into(),
        ),
        (
            "run without checkpoint",
            vec![("run", &t.untrained)],
            Some(("x.png", &png)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "has no saved checkpoint yet".into(),
        ),
        (
            "unknown label",
            vec![("run", run), ("label", "Unicorn")],
            Some(("x.png", &png)),
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown label &#39;Unicorn&#39;; this run predicts: {}", t.labels[0]),
        ),
    ];
    for (case, fields, image, status, message) in cases {
        let reply = post(app_for(t), "/predict", &fields, image).await;
        let html = reply.text();
        assert_eq!(reply.status, status, "{case}: {html}");
        assert!(
            html.contains("id=\"predict-error\"") && html.contains(&message),
            "{case}: {html}"
        );
        assert!(
            html.contains("id=\"predict-form\"") && !html.contains("id=\"probabilities\""),
            "{case}"
        );
    }

    // Over the body limit: refused up front (Content-Length) or while streaming; same message.
    let too_big = multipart(&[("run", run)], Some(("big.png", &vec![0u8; 17 << 20])));
    let mut request = post_request("/predict", too_big.clone());
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, too_big.len().to_string().parse().unwrap());
    for (how, request) in [
        ("declared", request),
        ("streamed", post_request("/predict", too_big.clone())),
    ] {
        let reply = app_for(t).send(request).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{how}");
        assert!(reply.text().contains("larger than 16 MiB"), "{how}: {}", reply.text());
        assert!(reply.text().contains("id=\"predict-form\""), "{how}");
    }
    let reply = app_for(t).send(post_request("/api/predict", too_big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.json()["error"].as_str().unwrap().contains("16 MiB"));
    // A 1 MiB upload is fine, although over the rest of the app's 256 KiB limit.
    let noisy = GrayImage::from_fn(1024, 1024, |x, y| image::Luma([((x * 7919 + y * 104_729) % 251) as u8]));
    let noisy = encode(&image::DynamicImage::ImageLuma8(noisy), image::ImageFormat::Png);
    assert!(noisy.len() > 256 * 1024, "{}", noisy.len());
    let reply = post(app_for(t), "/api/predict", &[("run", run)], Some(("n.png", &noisy))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn only_stored_hex_addresses_resolve() {
    let t = trained();
    let missing = "0".repeat(64);
    for uri in [
        "/predict/abc".to_string(),
        format!("/predict/{}?run={}", "g".repeat(64), t.run),
        format!("/predict/{}/gradcam.png?run={}", "A".repeat(64), t.run),
        format!("/predict/{missing}/image.png"),
        format!("/predict/{missing}/gradcam.png?run={}", t.run),
        "/predict/..%2F..%2Fetc%2Fpasswd/image.png".to_string(),
    ] {
        let reply = app_for(t).get(&uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}: {}", reply.text());
        assert!(reply.text().contains("upload it again"), "{uri}");
    }
}

#[tokio::test]
async fn the_run_page_shows_predictions_on_its_own_validation_images() {
    let t = trained();
    let page = app_for(t).get(&format!("/runs/{}", t.run)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("Predictions on validation images"));
    for file in ["image.png", "gradcam.png", "top.svg"] {
        assert!(
            html.contains(&format!("src=\"/runs/{}/predictions/0/{file}\"", t.run)),
            "{file}"
        );
    }
    let untrained = app_for(t)
        .get(&format!("/runs/{}", t.untrained))
        .await
        .text()
        .to_owned();
    assert!(!untrained.contains("Predictions on validation images"));

    // The images are the first of the run's validation split (recomputed here independently).
    let table = LabelTable::load(t.config.labels.as_ref().unwrap()).unwrap();
    let split = split::split(
        &table,
        &SplitOptions {
            strategy: t.config.split,
            val_fraction: t.config.val_fraction as f64,
            test_fraction: t.config.test_fraction as f64,
            per_class: t.config.per_class,
            seed: t.config.seed,
            lists_dir: None,
            images_dir: None,
        },
    )
    .unwrap();
    let first_val = &table.records[split.val[0]].image;
    let details = app_for(t).get(&format!("/runs/{}/predictions", t.run)).await;
    assert_eq!(details.status, StatusCode::OK, "{}", details.text());
    let details = details.text();
    assert!(details.contains(&format!("<h2>{first_val} ")), "{details}");
    assert_eq!(
        details.matches("class=\"validation-image\"").count(),
        4.min(split.val.len())
    );
    // Each Grad-CAM has the colour scale beside it, and so has the run page's strip.
    assert_eq!(
        details
            .matches("<img class=\"gradcam-scale\" src=\"/predict/gradcam-scale.svg\"")
            .count(),
        4.min(split.val.len())
    );
    assert!(html.contains("<img class=\"gradcam-scale\" src=\"/predict/gradcam-scale.svg\""));

    let image = app_for(t)
        .get(&format!("/runs/{}/predictions/0/image.png", t.run))
        .await
        .png();
    assert_eq!((image.width(), image.height()), (64, 64), "the model's input");
    let overlay = app_for(t)
        .get(&format!("/runs/{}/predictions/0/gradcam.png", t.run))
        .await
        .png();
    assert_eq!(overlay.width(), 64);
    let bars = app_for(t).get(&format!("/runs/{}/predictions/0/top.svg", t.run)).await;
    assert_eq!(bars.content_type(), "image/svg+xml");
    let ticks = bars
        .text()
        .lines()
        .filter(|l| l.starts_with("<polyline") && l.contains("#222222"))
        .count();
    assert_eq!(ticks, 3.min(t.labels.len()), "a threshold tick per label");
    // The same bars as a PNG and as CSV, drawn from the same data.
    let png = app_for(t).get(&format!("/runs/{}/predictions/0/top.png", t.run)).await;
    assert!(png.png().width() > 0);
    let csv = app_for(t).get(&format!("/runs/{}/predictions/0/top.csv", t.run)).await;
    assert!(
        csv.text().starts_with("label,probability,threshold\n"),
        "{}",
        csv.short()
    );
    assert_eq!(csv.text().lines().count(), 1 + 3.min(t.labels.len()));
    assert_eq!(bars.header("x-chart-data"), png.header("x-chart-data"));
    for uri in [
        format!("/runs/{}/predictions/99/image.png", t.run),
        format!("/runs/{}/predictions/0/other.png", t.run),
        format!("/runs/{}/predictions", t.untrained),
        "/runs/nope/predictions".to_string(),
    ] {
        assert_eq!(app_for(t).get(&uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn real_nih_x_rays_gray_and_rgba_are_predicted() {
    let t = trained();
    let dir = nih_dir().join("images_1024");
    // 00002578_000.png is one of the NIH files stored as RGBA.
    for name in ["00000075_000.png", "00002578_000.png"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reply = post(app_for(t), "/api/predict", &[("run", &t.run)], Some((name, &bytes))).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
        let json = reply.json();
        assert_eq!(
            (json["width"].as_u64(), json["height"].as_u64()),
            (Some(1024), Some(1024)),
            "{name}"
        );
        assert_eq!(json["labels"].as_array().unwrap().len(), t.labels.len());
        let overlay = app_for(t).get(json["gradcam"].as_str().unwrap()).await.png();
        assert_eq!((overlay.width(), overlay.height()), (1024, 1024), "{name}");
    }
    assert!(
        matches!(
            image::open(dir.join("00002578_000.png")).unwrap(),
            image::DynamicImage::ImageRgba8(_)
        ),
        "the RGBA case really is RGBA"
    );
}

#[tokio::test]
async fn a_checkpoint_written_on_burn_021_is_refused_with_what_to_do() {
    let t = trained();
    // A copy of the trained run's checkpoints whose state says format 1, as cxr8 on Burn 0.21 wrote.
    let old = stored_run(&t.store, "trained on burn 0.21");
    let dir = t.paths.ckpt_dir.join(&old);
    copy_dir(&t.paths.ckpt_dir.join(&t.run), &dir);
    t.store
        .set_runtime_info(&old, "cpu (flex)", &dir.to_string_lossy())
        .unwrap();
    let best = CheckpointRef::locate(&old, &t.paths.ckpt_dir, Slot::Best)
        .unwrap()
        .epoch_dir;
    let state_path = best.join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["format"] = 1.into();
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();

    let png = demo_png(t);
    let reply = post(app_for(t), "/api/predict", &[("run", &old)], Some(("x.png", &png))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["fields"][0]["field"], "run");
    let message = json["fields"][0]["message"].as_str().unwrap();
    assert!(message.contains("Burn 0.21") && message.contains("Clone"), "{message}");
    let page = post(app_for(t), "/predict", &[("run", &old)], Some(("x.png", &png))).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text().contains("Burn 0.21"), "{}", page.text());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_runs_split_predictions_download_as_csv() {
    let t = trained();
    let app = app_for(t);
    let data = cxr8::train::job::prepare_data(&t.config, &t.paths, None).unwrap();
    for (query, rows) in [("", data.test.0.len()), ("?split=val", data.val.0.len())] {
        let reply = app.get(&format!("/api/runs/{}/predictions.csv{query}", t.run)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.short());
        assert!(reply.content_type().starts_with("text/csv"));
        let mut lines = reply.text().lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[0], "image");
        assert_eq!(header[1..], t.labels.iter().map(String::as_str).collect::<Vec<_>>()[..]);
        assert_eq!(lines.count(), rows, "{query}");
    }
    let bad = app
        .get(&format!("/api/runs/{}/predictions.csv?split=holdout", t.run))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("split must be test, val or train"));
    let untrained = app.get(&format!("/api/runs/{}/predictions.csv", t.untrained)).await;
    assert_eq!(untrained.status, StatusCode::NOT_FOUND);
    assert!(untrained.text().contains("no saved checkpoint"), "{}", untrained.text());
    let unknown = app.get("/api/runs/nope/predictions.csv").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn weights_download_refuses_what_torchvision_cannot_load() {
    let t = trained();
    let app = app_for(t);
    // The trained run is a simple-cnn: torchvision has no such model.
    let refused = app.get(&format!("/runs/{}/weights.safetensors", t.run)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.short());
    assert!(
        refused.text().contains("no torchvision counterpart"),
        "{}",
        refused.text()
    );
    let untrained = app.get(&format!("/runs/{}/weights.safetensors", t.untrained)).await;
    assert_eq!(untrained.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/runs/nope/weights.safetensors").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_finished_run_has_its_test_results_and_scoring_again_gives_the_same_numbers() {
    let t = trained();
    let app = app_for(t);
    // Recorded by the run itself (the recorder stores the engine's test event).
    let detail = app.get(&format!("/api/runs/{}", t.run)).await.json();
    let stored = detail["test"].clone();
    assert!(stored["images"].as_u64().is_some(), "{detail}");
    assert_eq!(detail["test_mean_auroc"], stored["mean_auroc"]);
    let events = t.store.events_after(&t.run, 0).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let test_at = kinds.iter().position(|k| *k == "test").expect("a test event");
    assert_eq!(kinds[test_at + 1], "done", "{kinds:?}");

    // On demand (what the run page's button does): the same checkpoint, data and seed give the
    // same report.
    let reply = app.send_empty(Method::POST, &format!("/api/runs/{}/test", t.run)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.short());
    assert_eq!(reply.json(), stored);
    let waiting = app
        .send_empty(Method::POST, &format!("/api/runs/{}/test", t.untrained))
        .await;
    assert_eq!(waiting.status, StatusCode::CONFLICT, "{}", waiting.short());
    assert!(waiting.text().contains("scored on its test split when it finishes"));
    let unknown = app.send_empty(Method::POST, "/api/runs/nope/test").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // The run page's button: scores, then back to the run's test section.
    let button = app.post_form(&format!("/runs/{}/test", t.run), &[]).await;
    assert_eq!(button.status, StatusCode::SEE_OTHER, "{}", button.short());
    assert_eq!(button.location(), Some(format!("/runs/{}#test", t.run).as_str()));

    // ROC and PR curves of the best checkpoint, validation and test, areas in the legend.
    let label = stored["curves"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .expect("a label with curves")
        .clone();
    let page = app.get(&format!("/runs/{}", t.run)).await;
    assert!(page.text().contains(&format!("/runs/{}/charts/roc.svg?label=", t.run)));
    for (kind, area) in [("roc", "AUROC"), ("pr", "AP")] {
        let uri = format!("/runs/{}/charts/{kind}.svg?label={}", t.run, encode_component(&label));
        let chart = app.get(&uri).await;
        assert_eq!(chart.status, StatusCode::OK, "{}", chart.short());
        let auroc = stored["curves"][&label][if kind == "roc" { "auroc" } else { "ap" }]
            .as_f64()
            .unwrap();
        assert!(chart.text().contains(&format!("test ({area} {auroc:.3})")), "{kind}");
    }
    let missing = app.get(&format!("/runs/{}/charts/roc.svg?label=Unicorn", t.run)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_imported_checkpoint_is_a_run_the_predict_page_explains_and_exports() {
    use cxr8::model::{torchvision, Architecture, Classifier, ModelSpec};
    use cxr8::train::weights::{import_checkpoint, ImportRequest};
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let spec = ModelSpec {
        architecture: Architecture::ResNet18,
        ..ModelSpec::default()
    };
    let source = Classifier::new(&spec, 2, &cxr8::train::backend::BackendKind::Cpu.device());
    let tensors = torchvision::export(&source, &spec).unwrap();
    let weights = tmp.path().join("resnet18.safetensors");
    std::fs::write(
        &weights,
        torchvision::safetensors_bytes(&tensors, &Default::default()).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("imported-resnet");
    let (epoch_dir, report, labels) = import_checkpoint(&ImportRequest {
        weights,
        architecture: Architecture::ResNet18,
        image_size: 64,
        mean: 0.5,
        std: 0.25,
        labels: Some(vec!["Effusion".into(), "Mass".into()]),
        out: out.clone(),
    })
    .unwrap();
    assert!(report.head_kept && labels.len() == 2);
    let config = cxr8::train::checkpoint::read_state_at(&epoch_dir).unwrap().config;
    let id = cxr8::service::runs::register_imported(&t.store, &config, &out, "resnet18.safetensors").unwrap();

    let png = demo_png(t);
    let reply = post(app_for(t), "/api/predict", &[("run", &id)], Some(("x.png", &png))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["labels"].as_array().unwrap().len(), 2);
    let overlay = app_for(t).get(json["gradcam"].as_str().unwrap()).await.png();
    assert!(overlay.width() > 0);

    let download = app_for(t).get(&format!("/runs/{id}/weights.safetensors")).await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.short());
    let file = safetensors::SafeTensors::deserialize(&download.body).unwrap();
    assert_eq!(file.tensor("fc.weight").unwrap().shape(), [2, 512]);
    assert_eq!(file.tensor("conv1.weight").unwrap().shape(), [64, 1, 7, 7]);
}

#[tokio::test]
async fn an_empty_grad_cam_is_said_in_words_and_the_default_label_skips_it() {
    use crate::util::{empty_map_checkpoint, EMPTY_MAP_LABELS};
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    let (out, epoch_dir) = empty_map_checkpoint(tmp.path());
    let config = cxr8::train::checkpoint::read_state_at(&epoch_dir).unwrap().config;
    let id = cxr8::service::runs::register_imported(&t.store, &config, &out, "crafted.safetensors").unwrap();
    let png = demo_png(t);

    // By default: Hernia and Mass are more probable, but their maps are empty, so Effusion's
    // map is shown, and the JSON says which were passed over and why.
    let reply = post(app_for(t), "/api/predict", &[("run", &id)], Some(("x.png", &png))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json = reply.json();
    let ranked: Vec<&str> = json["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(ranked, EMPTY_MAP_LABELS, "the crafted biases rank the labels");
    assert_eq!(json["gradcam_label"], "Effusion", "{json}");
    assert_eq!(json["gradcam_empty"], false);
    assert!(json["gradcam_peak"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(json["gradcam_skipped"], serde_json::json!(["Hernia", "Mass"]));
    let note = json["gradcam_note"].as_str().unwrap();
    assert!(
        note.contains("Showing Effusion, the most probable label whose Grad-CAM is not empty")
            && note.contains("No region raises the score for Hernia, Mass on this image"),
        "{note}"
    );
    assert_eq!(json["gradcam_scale"], "/predict/gradcam-scale.svg");
    let sha = json["image"].as_str().unwrap().to_string();

    // The page: Effusion's map by default, the sentence, both empty labels marked, the scale.
    let page = app_for(t).get(&format!("/predict/{sha}?run={id}")).await;
    let html = page.text();
    assert!(
        html.contains("<figcaption>Grad-CAM for Effusion</figcaption>"),
        "{html}"
    );
    assert!(
        html.contains("id=\"gradcam-note\"")
            && html.contains("No region raises the score for Hernia, Mass on this image"),
        "{html}"
    );
    assert_eq!(
        html.matches("class=\"empty-badge\"").count(),
        2,
        "Hernia's and Mass's rows: {html}"
    );
    assert!(
        html.contains("<img class=\"gradcam-scale\" src=\"/predict/gradcam-scale.svg\""),
        "{html}"
    );

    // Asked for an empty label: shown, said in words and marked, on the page and in the JSON.
    let page = app_for(t).get(&format!("/predict/{sha}?run={id}&label=Hernia")).await;
    let html = page.text();
    assert!(
        html.contains("No region raises the score for Hernia on this image: its Grad-CAM is empty"),
        "{html}"
    );
    assert!(
        html.contains("id=\"gradcam-empty\"")
            && html.contains("alt=\"empty Grad-CAM (the image, hatched) for Hernia\"")
    );
    let reply = post(
        app_for(t),
        "/api/predict",
        &[("run", &id), ("label", "mass")],
        Some(("x.png", &png)),
    )
    .await;
    let json = reply.json();
    assert_eq!(
        (&json["gradcam_label"], &json["gradcam_empty"], &json["gradcam_peak"]),
        (
            &serde_json::json!("Mass"),
            &serde_json::json!(true),
            &serde_json::json!(0.0)
        ),
        "{json}"
    );
    assert_eq!(
        json["gradcam_skipped"],
        serde_json::json!([]),
        "nothing is passed over when a label is asked for"
    );
    assert!(json["gradcam_note"]
        .as_str()
        .unwrap()
        .starts_with("No region raises the score for Mass on this image"));

    // The empty overlay is the image hatched in amber, not the plain gray image; between the
    // hatch lines the image shows unchanged.
    let gray = app_for(t)
        .get(&format!("/predict/{sha}/image.png"))
        .await
        .png()
        .to_rgb8();
    let empty = app_for(t)
        .get(&format!("/predict/{sha}/gradcam.png?run={id}&label=Hernia"))
        .await
        .png()
        .to_rgb8();
    let frame = empty.get_pixel(0, 50).0;
    assert!(
        frame[0] > frame[1] && frame[1] > frame[2] + 40,
        "amber frame: {frame:?}"
    );
    // 100 px: hatch lines every 8 px where (x + y) % 8 == 0.
    assert_eq!(empty.get_pixel(50, 53), gray.get_pixel(50, 53));
    assert_ne!(empty.get_pixel(50, 54), gray.get_pixel(50, 54));
    let shown = app_for(t)
        .get(&format!("/predict/{sha}/gradcam.png?run={id}"))
        .await
        .png()
        .to_rgb8();
    let coloured = shown.pixels().zip(gray.pixels()).filter(|(a, b)| a != b).count();
    assert!(
        coloured > 100 * 100 / 2,
        "Effusion's map colours the image: {coloured} pixels"
    );

    let scale = app_for(t).get("/predict/gradcam-scale.svg").await;
    assert_eq!(scale.status, StatusCode::OK);
    assert_eq!(scale.content_type(), "image/svg+xml");
    assert!(scale.text().contains("1 = this map's peak"));
}

//! Charts as a user downloads them: the N×N confusion matrix of a single-label run (equal to what
//! `cxr8 eval` computes for the same checkpoint), matrices side by side on the compare page, and
//! every chart as SVG, PNG and CSV drawn from the same data.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{Server, TestApp};

fn cxr8(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cxr8")).args(args).output().unwrap()
}

/// Four classes, one per image (so the task is single-label), over the demo images.
const CLASSES: [&str; 4] = ["Atelectasis", "Effusion", "Mass", "Nodule"];

fn single_label_file(dir: &Path, images: &Path) -> std::path::PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut text = format!("id,subject_id,{}\n", CLASSES.join(","));
    for (i, name) in names.iter().enumerate() {
        let class = i % CLASSES.len();
        let cells: Vec<&str> = (0..CLASSES.len()).map(|c| if c == class { "1" } else { "0" }).collect();
        text.push_str(&format!("{name},{},{}\n", 100 + i / 2, cells.join(",")));
    }
    let path = dir.join("single.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Trains a tiny single-label run with the binary, recorded in `data`'s run store; its id.
fn train(labels: &Path, images: &Path, data: &Path, ckpts: &Path, seed: &str) -> String {
    let out = cxr8(&[
        "train",
        "--labels",
        labels.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--model",
        "simple-cnn",
        "--width",
        "0.25",
        "--image-size",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--seed",
        seed,
        "--device",
        "cpu",
        "--data-dir",
        data.to_str().unwrap(),
        "--ckpt-dir",
        ckpts.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["run_id"].as_str().expect("the run's id").to_string()
}

/// `actual,predicted,count` rows back into a matrix over `classes`.
fn matrix_from_csv(csv: &str, classes: &[&str]) -> Vec<Vec<u64>> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("actual,predicted,count"));
    let mut matrix = vec![vec![0; classes.len()]; classes.len()];
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let index = |name: &str| classes.iter().position(|c| *c == name).unwrap();
        matrix[index(cells[0])][index(cells[1])] = cells[2].parse().unwrap();
    }
    matrix
}

#[test]
fn a_single_label_runs_matrix_equals_cxr8_evals_and_compare_shows_both_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = cxr8::data::demo::generate(&cxr8::data::demo::DemoConfig {
        out: tmp.path().join("demo"),
        images: 64,
        size: 64,
        seed: 5,
    })
    .unwrap();
    let images = demo.out.join("images");
    let labels = single_label_file(tmp.path(), &images);
    let (data, ckpts) = (tmp.path().join("data"), tmp.path().join("ckpts"));
    let first = train(&labels, &images, &data, &ckpts, "1");
    let second = train(&labels, &images, &data, &ckpts, "2");

    let out = cxr8(&[
        "eval",
        "--checkpoint",
        &first,
        "--split",
        "val",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
        "--ckpt-dir",
        ckpts.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evaluated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<Vec<u64>> = serde_json::from_value(evaluated["confusion"].clone()).expect("an N×N matrix");
    assert_eq!(expected.len(), CLASSES.len());

    let server = Server::start(&data, &ckpts);
    let run = server.get_json(&format!("/api/runs/{first}"));
    let best = run["best_epoch"].as_u64().expect("a best epoch");
    let page = server.get(&format!("/runs/{first}")).text();
    let src = format!("/runs/{first}/charts/confusion.svg?epoch={best}&#38;view=counts");
    assert!(
        page.contains(&src),
        "the run page shows the N×N matrix of its best epoch: {page}"
    );
    assert!(page.contains("view=recall"), "and offers the row-normalised view");

    let base = format!("/runs/{first}/charts/confusion");
    let csv = server.get(&format!("{base}.csv?epoch={best}"));
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(
        matrix_from_csv(&csv.text(), &CLASSES),
        expected,
        "the page's cells are cxr8 eval's matrix for that checkpoint"
    );
    let svg = server.get(&format!("{base}.svg?epoch={best}"));
    let png = server.get(&format!("{base}.png?epoch={best}"));
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    let digest = |r: &crate::util::Response| r.header("x-chart-data").map(str::to_string);
    assert!(digest(&svg).is_some());
    assert_eq!(digest(&svg), digest(&png), "the SVG and the PNG draw the same data");
    assert_eq!(digest(&svg), digest(&csv), "and the CSV lists it");
    for class in CLASSES {
        assert!(svg.text().contains(class), "{class} names a row and a column");
    }
    // The done-when of the step axis: the PNG on the step axis draws the SVG's series.
    let loss = format!("/runs/{first}/charts/loss");
    let (svg_step, png_step) = (
        server.get(&format!("{loss}.svg?x=step")),
        server.get(&format!("{loss}.png?x=step")),
    );
    assert_eq!(png_step.header("content-type"), Some("image/png"));
    assert_eq!(digest(&svg_step), digest(&png_step), "same series on the step axis");
    assert_ne!(
        digest(&svg_step),
        digest(&server.get(&format!("{loss}.svg"))),
        "the epoch axis differs"
    );
    let steps_csv = server.get(&format!("{loss}.csv?x=step")).text();
    assert!(steps_csv.starts_with("series,step"), "{steps_csv}");
    assert!(
        steps_csv.lines().count() > 1 + 4,
        "step points beyond the epochs: {steps_csv}"
    );
    let recall = server.get(&format!("{base}.svg?epoch={best}&view=recall"));
    assert_ne!(digest(&recall), digest(&svg), "the recall view is another figure");
    let bad = server.get(&format!("{base}.svg?epoch={best}&view=percent"));
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("'counts' or 'recall'"), "{}", bad.text());

    let compare = server.get(&format!("/compare?runs={first},{second}")).text();
    let matrices = compare
        .split("id=\"matrices\"")
        .nth(1)
        .expect("a confusion section on the compare page");
    for id in [&first, &second] {
        assert!(
            matrices.contains(&format!("/runs/{id}/charts/confusion.svg?epoch=")),
            "{id}'s matrix at its best epoch: {matrices}"
        );
    }
    let export = server.get(&format!("/compare/export.csv?runs={first},{second}"));
    assert_eq!(export.status, 200);
    let export = export.text();
    assert!(export.starts_with("run_id,run,metric,epoch,value\n"), "{export}");
    for id in [&first, &second] {
        let losses = export
            .lines()
            .filter(|l| l.starts_with(id.as_str()) && l.contains(",val_loss,"))
            .count();
        assert_eq!(losses, 2, "two epochs of validation loss for {id}");
    }
}

/// A finished multi-label run with two stored epochs whose per-label rows carry tuned counts.
fn multi_label_run(app: &TestApp) -> String {
    let store = app.store();
    let id = store
        .create_run(&cxr8::store::NewRun {
            name: "grid",
            config: &serde_json::json!({"model": "simple-cnn"}),
            dataset: "demo",
            model: "simple-cnn",
            image_size: 64,
            epochs_planned: 2,
            tags: &[],
        })
        .unwrap();
    for epoch in 1..=2u32 {
        let metrics = serde_json::json!({
            "val_loss": 1.0 / epoch as f64,
            "train_loss": 1.2 / epoch as f64,
            "val_mean_auroc": 0.6,
            "val_per_label": [
                {"label": "Effusion", "auroc": 0.7, "threshold": 0.31, "tp": 5, "fp": 2, "fn": 4, "tn": 89,
                 "tuned": {"tp": 8, "fp": 11, "fn": 1, "tn": 80}},
                {"label": "Hernia", "auroc": null, "threshold": 0.5, "tp": 0, "fp": 0, "fn": 0, "tn": 100,
                 "tuned": {"tp": 0, "fp": 0, "fn": 0, "tn": 100}}
            ]
        });
        store.record_epoch(&id, epoch, &metrics, None).unwrap();
    }
    id
}

#[tokio::test]
async fn a_multi_label_run_shows_every_labels_confusion_in_one_figure() {
    let app = TestApp::new();
    let id = multi_label_run(&app);
    let page = app.get(&format!("/runs/{id}?epoch=2")).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("validation-tuned threshold"), "{}", page.short());
    assert!(page
        .text()
        .contains(&format!("/runs/{id}/charts/confusion.svg?epoch=2")));
    let csv = app.get(&format!("/runs/{id}/charts/confusion.csv?epoch=2")).await;
    assert_eq!(csv.status, 200, "{}", csv.short());
    assert_eq!(
        csv.text(),
        "label,threshold,tn,fp,fn,tp\nEffusion,0.31,80,11,1,8\nHernia,0.5,100,0,0,0\n",
        "every label at its tuned threshold"
    );
    let svg = app.get(&format!("/runs/{id}/charts/confusion.svg?epoch=2")).await;
    for text in ["Effusion", "Hernia", "at 0.310", "80", "11"] {
        assert!(svg.text().contains(text), "{text} missing");
    }
    // One label's 2×2 at 0.5 is still there.
    let one = app
        .get(&format!("/runs/{id}/charts/confusion.csv?epoch=2&label=Effusion"))
        .await;
    assert_eq!(one.status, 200);
    assert!(one.text().contains("negative,negative,89"), "{}", one.text());
}

#[tokio::test]
async fn every_chart_comes_as_svg_png_and_csv_of_the_same_data() {
    let app = TestApp::new();
    let id = multi_label_run(&app);
    for path in [
        format!("/runs/{id}/charts/loss"),
        format!("/runs/{id}/charts/per_label_auroc"),
        "/compare/charts/loss".to_string(),
        "/compare/charts/per_label_auroc".to_string(),
    ] {
        let query = if path.starts_with("/compare") {
            format!("?runs={id}")
        } else {
            String::new()
        };
        let mut digests = Vec::new();
        for (extension, content_type) in [("svg", "image/svg+xml"), ("png", "image/png"), ("csv", "text/csv")] {
            let reply = app.get(&format!("{path}.{extension}{query}")).await;
            assert_eq!(reply.status, 200, "{path}.{extension}: {}", reply.short());
            assert!(reply.content_type().starts_with(content_type), "{path}.{extension}");
            digests.push(reply.header("x-chart-data").expect("a data digest").to_string());
            if extension == "png" {
                let width = reply.png().width();
                assert!(width >= 1000, "2× by default: {width} px wide");
            }
        }
        assert!(digests.iter().all(|d| *d == digests[0]), "{path}: {digests:?}");
    }
    let too_big = app.get(&format!("/runs/{id}/charts/loss.png?scale=9")).await;
    assert_eq!(too_big.status, 400);
    assert!(too_big.text().contains("from 1 to 4"), "{}", too_big.short());
    let one_x = app.get(&format!("/runs/{id}/charts/loss.png?scale=1")).await;
    assert_eq!(one_x.png().width(), 560);
    let gif = app.get(&format!("/runs/{id}/charts/loss.gif")).await;
    assert_eq!(gif.status, 404);
    assert!(gif.text().contains(".svg, .png"), "{}", gif.short());
    // The run page offers the downloads beside each chart.
    let page = app.get(&format!("/runs/{id}")).await;
    assert!(
        page.text().contains(&format!("/runs/{id}/charts/loss.png?")),
        "{}",
        page.short()
    );
    assert!(page.text().contains(&format!("/runs/{id}/charts/loss.csv?")));
}

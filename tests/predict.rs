//! Inference end to end: train a tiny run on a tiny demo set, then predict, Grad-CAM, `cxr8
//! predict` and `cxr8 eval --checkpoint` from its checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;

use cxr8::data::demo::{self, DemoConfig};
use cxr8::data::images;
use cxr8::model::Architecture;
use cxr8::train::backend::{BackendKind, DeviceChoice};
use cxr8::train::checkpoint::Slot;
use cxr8::train::config::NoFinding;
use cxr8::train::job::{self, JobPaths};
use cxr8::train::predict::{CheckpointRef, Predictor};
use cxr8::train::runner::CancelHandle;
use cxr8::train::{TrainConfig, TrainEvent};

/// A synthetic demo set of `images` 64 px images in `dir/demo`.
fn demo_set(dir: &Path, images: usize, seed: u64) -> demo::DemoReport {
    demo::generate(&DemoConfig {
        out: dir.join("demo"),
        images,
        size: 64,
        seed,
    })
    .unwrap()
}

struct Trained {
    _tmp: tempfile::TempDir,
    ckpt_dir: PathBuf,
    labels: PathBuf,
    images: PathBuf,
}

/// A quarter-width CNN at 64 px for one epoch on the CPU: trains in about a second.
fn tiny_config(labels: PathBuf, images: PathBuf) -> TrainConfig {
    TrainConfig {
        labels: Some(labels),
        images: Some(images),
        architecture: Architecture::SimpleCnn,
        width: 0.25,
        image_size: 64,
        epochs: 1,
        batch_size: 16,
        device: DeviceChoice::Cpu,
        ..TrainConfig::default()
    }
}

fn train_tiny() -> Trained {
    let tmp = tempfile::tempdir().unwrap();
    let report = demo_set(tmp.path(), 60, 3);
    let config = tiny_config(report.label_file.clone(), report.out.join("images"));
    let paths = JobPaths {
        data_dir: tmp.path().join("data"),
        ckpt_dir: tmp.path().join("ckpts"),
    };
    let mut events = |_: TrainEvent| {};
    job::run_job(&config, "tiny", &paths, false, &mut events, &CancelHandle::new(), None).unwrap();
    Trained {
        ckpt_dir: paths.ckpt_dir,
        labels: report.label_file,
        images: report.out.join("images"),
        _tmp: tmp,
    }
}

fn first_image(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files[0].clone()
}

fn cxr8(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cxr8")).args(args).output().unwrap()
}

#[test]
fn a_trained_checkpoint_predicts_explains_and_evaluates() {
    let run = train_tiny();
    let ckpt = CheckpointRef::locate("tiny", &run.ckpt_dir, Slot::Best).unwrap();
    let predictor = Predictor::load(&ckpt, &BackendKind::Cpu.device()).unwrap();
    assert_eq!(predictor.image_size(), 64);
    assert!(!predictor.labels().is_empty());

    // Probabilities for every label, and the same as the batch path on the cache's pixels.
    let image_path = first_image(&run.images);
    let probs = predictor.predict_path(&image_path).unwrap();
    assert_eq!(probs.len(), predictor.labels().len());
    assert!(probs.iter().all(|(_, p)| (0.0..=1.0).contains(p)), "{probs:?}");
    let cached = images::load_resized(&image_path, 64).unwrap();
    let batch = predictor.probabilities(&[cached.as_raw(), cached.as_raw()]);
    let single: Vec<f32> = probs.iter().map(|(_, p)| *p).collect();
    assert_eq!(&batch[..single.len()], &single[..]);
    assert_eq!(&batch[single.len()..], &single[..]);

    // A heat map at the model's input size, in [0, 1].
    let heat = predictor.gradcam(&cached, 0).unwrap();
    assert_eq!((heat.width, heat.height), (64, 64));
    assert!(heat.values.iter().all(|v| (0.0..=1.0).contains(v)));

    // The binary: JSON predictions and a heat-map PNG with the image's size.
    let heat_dir = run.ckpt_dir.join("heat");
    let label = predictor.labels()[0].clone();
    let out = cxr8(&[
        "predict",
        "--checkpoint",
        "tiny",
        "--ckpt-dir",
        run.ckpt_dir.to_str().unwrap(),
        "--heatmap",
        heat_dir.to_str().unwrap(),
        "--label",
        &label,
        "--json",
        image_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &json[0];
    assert_eq!(first["predictions"].as_array().unwrap().len(), predictor.labels().len());
    assert_eq!(first["heatmap_label"], label.as_str());
    let png = image::open(first["heatmap"].as_str().unwrap()).unwrap();
    assert_eq!(
        (png.width(), png.height()),
        images::load_gray(&image_path).unwrap().dimensions()
    );

    // eval --checkpoint: the same JSON report as --predictions.
    let out = cxr8(&[
        "eval",
        "--checkpoint",
        "tiny",
        "--ckpt-dir",
        run.ckpt_dir.to_str().unwrap(),
        "--labels",
        run.labels.to_str().unwrap(),
        "--images",
        run.images.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["labels", "mean_auroc", "map", "rows", "task", "macro_f1", "thresholds"] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["rows"], 60);

    // Clear errors: unknown run, unreadable image, unknown label.
    let ckpt_dir = run.ckpt_dir.to_str().unwrap();
    let out = cxr8(&[
        "predict",
        "--checkpoint",
        "nope",
        "--ckpt-dir",
        ckpt_dir,
        image_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no checkpoint 'nope'") && err.contains("tiny"),
        "{err}"
    );

    let bad = run.ckpt_dir.join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let out = cxr8(&[
        "predict",
        "--checkpoint",
        "tiny",
        "--ckpt-dir",
        ckpt_dir,
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bad.png"), "{err}");

    let out = cxr8(&[
        "predict",
        "--checkpoint",
        "tiny",
        "--ckpt-dir",
        ckpt_dir,
        "--heatmap",
        heat_dir.to_str().unwrap(),
        "--label",
        "Unicorn",
        image_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unknown label 'Unicorn'") && err.contains(&label),
        "{err}"
    );
}

#[test]
fn a_finished_run_is_scored_once_on_its_test_split_with_validation_thresholds() {
    let tmp = tempfile::tempdir().unwrap();
    let report = demo_set(tmp.path(), 120, 4);
    let config = TrainConfig {
        epochs: 2,
        test_fraction: 0.25,
        ..tiny_config(report.label_file.clone(), report.out.join("images"))
    };
    let paths = JobPaths {
        data_dir: tmp.path().join("data"),
        ckpt_dir: tmp.path().join("ckpts"),
    };
    let mut seen = Vec::new();
    let mut events = |event: TrainEvent| seen.push(event);
    job::run_job(&config, "held", &paths, false, &mut events, &CancelHandle::new(), None).unwrap();

    // The test results come once, just before the run says it is done.
    let tests: Vec<usize> = (0..seen.len())
        .filter(|&i| matches!(seen[i], TrainEvent::Test { .. }))
        .collect();
    assert_eq!(tests.len(), 1, "one test event");
    assert!(matches!(seen[tests[0] + 1], TrainEvent::Finished { .. }));
    let TrainEvent::Test { report } = &seen[tests[0]] else {
        unreachable!()
    };

    // Recomputed from the best checkpoint on the run's own test split: the same numbers, and the
    // thresholds are the ones the checkpoint tuned on validation.
    let data = job::prepare_data(&config, &paths, None).unwrap();
    assert!(!data.test.0.is_empty());
    assert_eq!(report.images, data.test.0.len());
    let best = CheckpointRef::locate("held", &paths.ckpt_dir, Slot::Best).unwrap();
    let predictor = Predictor::load(&best, &BackendKind::Cpu.device()).unwrap();
    assert_eq!(report.epoch, Some(predictor.state().epoch));
    let pixels: Vec<&[u8]> = data.test.0.iter().map(|&i| data.cache.image(i)).collect();
    let probs = predictor.probabilities(&pixels);
    let width = data.labels.len();
    let mut defined = Vec::new();
    for (l, name) in data.labels.iter().enumerate() {
        let scores: Vec<f32> = probs.iter().skip(l).step_by(width).copied().collect();
        let truth: Vec<bool> = data.test.1.iter().map(|bits| bits & (1 << l) != 0).collect();
        let stored = &report.labels[name];
        assert_eq!(
            stored.threshold,
            predictor.thresholds()[l],
            "{name}: the validation threshold"
        );
        assert_eq!(stored.support, truth.iter().filter(|&&t| t).count() as u64);
        let auroc = cxr8::train::metrics::roc_auc(&scores, &truth);
        match (auroc, stored.auroc) {
            (Some(a), Some(b)) => {
                assert!((a - b).abs() < 1e-9, "{name}: {a} vs {b}");
                let [lo, hi] = stored.auroc_ci.expect("an interval beside a defined AUROC");
                assert!(lo <= b && b <= hi, "{name}: {b} outside [{lo}, {hi}]");
                defined.push(a);
            }
            (None, None) => assert!(stored.auroc_ci.is_none()),
            other => panic!("{name}: {other:?}"),
        }
    }
    let mean = defined.iter().sum::<f64>() / defined.len() as f64;
    assert!((report.mean_auroc.unwrap() - mean).abs() < 1e-9);
    let bootstrap = report.bootstrap.as_ref().unwrap();
    assert_eq!((bootstrap.resamples, bootstrap.unit.as_str()), (1000, "patient"));

    // `cxr8 eval --split test --out`: one row per test image, a column per label; its numbers
    // give the stored test AUROC again (as scikit-learn would from the same file).
    let csv_path = tmp.path().join("preds.csv");
    let out = cxr8(&[
        "eval",
        "--checkpoint",
        "held",
        "--ckpt-dir",
        paths.ckpt_dir.to_str().unwrap(),
        "--data-dir",
        paths.data_dir.to_str().unwrap(),
        "--split",
        "test",
        "--out",
        csv_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[0], "image");
    assert_eq!(&header[1..], &data.labels[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), report.images);
    let names: Vec<&str> = data.test.0.iter().map(|&i| data.cache.ids()[i].as_str()).collect();
    assert_eq!(rows.iter().map(|r| &r[0]).collect::<Vec<_>>(), names);
    for (l, name) in data.labels.iter().enumerate() {
        let scores: Vec<f32> = rows.iter().map(|r| r[l + 1].parse().unwrap()).collect();
        let truth: Vec<bool> = data.test.1.iter().map(|bits| bits & (1 << l) != 0).collect();
        let from_csv = cxr8::train::metrics::roc_auc(&scores, &truth);
        match (from_csv, report.labels[name].auroc) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "{name}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{name}"),
        }
    }
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["rows"], report.images);
    assert!((printed["mean_auroc"].as_f64().unwrap() - report.mean_auroc.unwrap()).abs() < 1e-6);
}

#[test]
fn label_choice_trains_reports_and_checkpoints_exactly_the_kept_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let report = demo_set(tmp.path(), 160, 6);
    let base = tiny_config(report.label_file.clone(), report.out.join("images"));
    let paths = JobPaths {
        data_dir: tmp.path().join("data"),
        ckpt_dir: tmp.path().join("ckpts"),
    };
    // Training positives per label with every label kept; a minimum between the rarest and the
    // most frequent drops some and keeps some.
    let all = job::prepare_data(&base, &paths, None).unwrap();
    let positives: Vec<usize> = (0..all.labels.len())
        .map(|l| all.train.1.iter().filter(|bits| *bits & (1 << l) != 0).count())
        .collect();
    let mut sorted = positives.clone();
    sorted.sort_unstable();
    let minimum = sorted[sorted.len() / 2].max(1);
    let expected: Vec<String> = all
        .labels
        .iter()
        .zip(&positives)
        .filter(|(_, &n)| n >= minimum)
        .map(|(l, _)| l.clone())
        .collect();
    assert!(
        !expected.is_empty() && expected.len() < all.labels.len(),
        "{positives:?} at {minimum}"
    );

    let config = TrainConfig {
        min_label_count: Some(minimum),
        ..base.clone()
    };
    let mut seen = Vec::new();
    let mut events = |event: TrainEvent| seen.push(event);
    job::run_job(
        &config,
        "chosen",
        &paths,
        false,
        &mut events,
        &CancelHandle::new(),
        None,
    )
    .unwrap();
    let best = CheckpointRef::locate("chosen", &paths.ckpt_dir, Slot::Best).unwrap();
    let predictor = Predictor::load(&best, &BackendKind::Cpu.device()).unwrap();
    assert_eq!(predictor.labels(), &expected[..], "the model's outputs");
    let val_labels: Vec<String> = seen
        .iter()
        .find_map(|e| match e {
            TrainEvent::Epoch { val, .. } => Some(val["per_label"].as_array().unwrap().clone()),
            _ => None,
        })
        .unwrap()
        .iter()
        .map(|m| m["label"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(val_labels, expected, "the validation metrics");
    let test = seen
        .iter()
        .find_map(|e| match e {
            TrainEvent::Test { report } => Some(report.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(test.labels.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = expected.clone();
        sorted.sort();
        sorted
    });

    // `cxr8 eval` with the full label file scores the model's labels only and says which not.
    let out = cxr8(&[
        "eval",
        "--checkpoint",
        "chosen",
        "--ckpt-dir",
        paths.ckpt_dir.to_str().unwrap(),
        "--labels",
        report.label_file.to_str().unwrap(),
        "--images",
        report.out.join("images").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut scored_labels: Vec<&String> = scored["labels"].as_object().unwrap().keys().collect();
    let mut model_labels: Vec<&String> = expected.iter().collect();
    scored_labels.sort();
    model_labels.sort();
    assert_eq!(scored_labels, model_labels, "exactly the model's labels");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dropped = all.labels.iter().find(|l| !expected.contains(l)).unwrap();
    assert!(
        stderr.contains("not scored:") && stderr.contains(dropped.as_str()),
        "{stderr}"
    );

    // An explicit list, in any case; an unknown name is refused with the names there are.
    let first = expected[0].to_uppercase();
    let include = TrainConfig {
        labels_include: vec![first],
        ..base.clone()
    };
    let data = job::prepare_data(&include, &paths, None).unwrap();
    assert_eq!(data.labels, vec![expected[0].clone()]);
    // "No Finding" as a label: the demo's NIH-style file only implies it; asked for, it is a
    // last label set exactly on the images with no finding.
    let with_no_finding = TrainConfig {
        no_finding: NoFinding::Label,
        ..base.clone()
    };
    let data = job::prepare_data(&with_no_finding, &paths, None).unwrap();
    assert_eq!(data.labels.len(), all.labels.len() + 1);
    assert_eq!(data.labels.last().map(String::as_str), Some("No Finding"));
    let no_finding_bit = 1u32 << all.labels.len();
    let healthy = all.train.1.iter().filter(|bits| **bits == 0).count();
    assert!(healthy > 0);
    assert_eq!(
        data.train.1.iter().filter(|bits| **bits == no_finding_bit).count(),
        healthy
    );
    assert!(
        data.train.1.iter().all(|bits| *bits != 0),
        "every image has a label now"
    );
    let hint = TrainConfig {
        labels_include: vec!["No Finding".into()],
        ..base.clone()
    };
    let err = job::prepare_data(&hint, &paths, None).err().unwrap().to_string();
    assert!(err.contains("--no-finding label"), "{err}");

    let unknown = TrainConfig {
        labels_include: vec!["Unicorn".into()],
        ..base
    };
    let err = job::prepare_data(&unknown, &paths, None).err().unwrap().to_string();
    assert!(err.contains("'Unicorn'") && err.contains(&expected[0]), "{err}");

    // The command line: `--json` lists exactly the kept labels and carries the test results.
    let out = cxr8(&[
        "train",
        "--labels",
        report.label_file.to_str().unwrap(),
        "--images",
        report.out.join("images").to_str().unwrap(),
        "--model",
        "simple-cnn",
        "--width",
        "0.25",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--min-label-count",
        &minimum.to_string(),
        "--data-dir",
        paths.data_dir.to_str().unwrap(),
        "--ckpt-dir",
        tmp.path().join("cli-ckpts").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["labels"], serde_json::json!(expected));
    let test = &summary["test"];
    assert!(test["images"].as_u64().unwrap() > 0, "{test}");
    assert_eq!(test["labels"].as_object().unwrap().len(), expected.len());
    assert_eq!(test["bootstrap"]["resamples"], 1000);
}

/// Writes NIH-CXR-LT-style split files over the demo images: `id,subject_id` then the 20 labels
/// (spelled with underscores, as the files do; the val file's columns in reverse order), one
/// patient per two images, no patient in two files. `single` gives every image exactly one label.
fn long_tail_files(dir: &Path, images: &[String], single: bool) -> [PathBuf; 3] {
    let labels: Vec<String> = cxr8::data::labels::long_tail_labels()
        .map(|l| l.replace(' ', "_"))
        .collect();
    let thirds = [
        0..images.len() / 2,
        images.len() / 2..images.len() * 3 / 4,
        images.len() * 3 / 4..images.len(),
    ];
    let names = ["train.csv", "val.csv", "test.csv"];
    let mut paths = Vec::new();
    for (part, (rows, name)) in thirds.into_iter().zip(names).enumerate() {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        if part == 1 {
            order.reverse();
        }
        let mut text = String::from("id,subject_id");
        for &l in &order {
            text.push(',');
            text.push_str(&labels[l]);
        }
        text.push('\n');
        for i in rows {
            // Frequent labels (0..4) so every file has positives and negatives of each.
            let on: Vec<usize> = if single {
                vec![i % 4]
            } else {
                vec![i % 4, 4 + (i / 3) % 3]
            };
            text.push_str(&format!("{},{}", images[i], 1000 + i / 2));
            for &l in &order {
                text.push_str(if on.contains(&l) { ",1" } else { ",0" });
            }
            text.push('\n');
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths.try_into().unwrap()
}

#[test]
fn a_data_set_shipped_as_train_val_test_files_trains_and_reports_on_its_own_test_file() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo_set(tmp.path(), 96, 8);
    let image_dir = demo.out.join("images");
    let mut names: Vec<String> = std::fs::read_dir(&image_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for single in [false, true] {
        let dir = tmp.path().join(if single { "single" } else { "multi" });
        std::fs::create_dir_all(&dir).unwrap();
        let [train, val, test] = long_tail_files(&dir, &names, single);
        let config = TrainConfig {
            val_labels: Some(val),
            test_labels: Some(test),
            ..tiny_config(train, image_dir.clone())
        };
        assert_eq!(config.validate(), Ok(()));
        let paths = JobPaths {
            data_dir: dir.join("data"),
            ckpt_dir: dir.join("ckpts"),
        };
        let data = job::prepare_data(&config, &paths, None).unwrap();
        assert_eq!(
            (data.train.0.len(), data.val.0.len(), data.test.0.len()),
            (48, 24, 24),
            "the files are the split"
        );
        assert_eq!(data.labels.len(), 20);
        assert_eq!(data.task == cxr8::data::Task::SingleLabel, single);
        // Column order does not matter: the val file's reversed columns mean the same labels.
        let effusion = data.labels.iter().position(|l| l == "Effusion").unwrap();
        let val_effusion = data.val.1.iter().filter(|b| *b & (1 << effusion) != 0).count();
        assert!(val_effusion > 0, "Effusion positives reach the validation split");

        let mut seen = Vec::new();
        let mut events = |event: TrainEvent| seen.push(event);
        job::run_job(&config, "lt", &paths, false, &mut events, &CancelHandle::new(), None).unwrap();
        let report = seen
            .iter()
            .find_map(|e| match e {
                TrainEvent::Test { report } => Some(report.clone()),
                _ => None,
            })
            .expect("test results");
        assert_eq!(report.images, 24, "scored on the test file");
        assert_eq!(report.bootstrap.as_ref().unwrap().units, 12, "its 12 patients");
        assert_eq!(report.labels.len(), 20);
        assert_eq!(
            report.accuracy.is_some(),
            single,
            "top-1 accuracy for single-label files only"
        );
        if single {
            // 12 training images for each of the four classes in use, none for the rest: all few-shot.
            let few = report.shot_groups.iter().find(|g| g.group == "few").unwrap();
            assert_eq!(few.classes.len(), 20);
            assert!(few.accuracy.is_some());
        } else {
            assert!(report.shot_groups.is_empty());
        }
    }

    // NIH-CXR-LT's files have a "No Finding" column: it can be taken out (not both ways at once).
    let dir = tmp.path().join("no-finding");
    std::fs::create_dir_all(&dir).unwrap();
    let [train, val, test] = long_tail_files(&dir, &names, false);
    let without = TrainConfig {
        val_labels: Some(val),
        test_labels: Some(test),
        no_finding: NoFinding::NotALabel,
        ..tiny_config(train, image_dir.clone())
    };
    let paths = JobPaths {
        data_dir: dir.join("data"),
        ckpt_dir: dir.join("ckpts"),
    };
    let data = job::prepare_data(&without, &paths, None).unwrap();
    assert_eq!(data.labels.len(), 19);
    assert!(!data.labels.iter().any(|l| l == "No Finding"));
    let both = TrainConfig {
        labels_include: vec!["No Finding".into(), "Effusion".into()],
        ..without
    };
    let err = job::prepare_data(&both, &paths, None).err().unwrap().to_string();
    assert!(err.contains("choose one"), "{err}");

    // Only one of the two extra files is a clear error naming it.
    let half = TrainConfig {
        labels: Some("train.csv".into()),
        val_labels: Some("val.csv".into()),
        ..TrainConfig::default()
    };
    let fields: Vec<String> = half.validate().unwrap_err().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["val_labels"]);
}

/// A conv weight of a safetensors file (what `cxr8 export` writes) as f32 values.
fn safetensors_tensor(bytes: &[u8], key: &str) -> Vec<f32> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let view = file.tensor(key).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn a_run_started_from_torchvision_weights_fine_tunes_resumes_predicts_and_exports() {
    use cxr8::model::torchvision;
    use cxr8::model::{Classifier, ModelSpec};
    use cxr8::train::config::Normalisation;

    let tmp = tempfile::tempdir().unwrap();
    let report = demo_set(tmp.path(), 64, 5);
    // ImageNet-shaped weights (1000 outputs) in torchvision's layout.
    let spec = ModelSpec {
        architecture: Architecture::MobileNetV2,
        ..ModelSpec::default()
    };
    let source = Classifier::new(&spec, 1000, &BackendKind::Cpu.device());
    let weights = tmp.path().join("mobilenet_v2.safetensors");
    let exported = torchvision::export(&source, &spec).unwrap();
    std::fs::write(
        &weights,
        torchvision::safetensors_bytes(&exported, &Default::default()).unwrap(),
    )
    .unwrap();
    let stem_key = "features.1.conv.0.0.weight";

    let config = TrainConfig {
        architecture: Architecture::MobileNetV2,
        width: 1.0,
        init_weights: Some(weights.clone()),
        freeze_backbone_epochs: 1,
        backbone_lr_factor: 0.1,
        normalisation: Normalisation::Imagenet,
        lr: 0.01,
        ..tiny_config(report.label_file.clone(), report.out.join("images"))
    };
    let paths = JobPaths {
        data_dir: tmp.path().join("data"),
        ckpt_dir: tmp.path().join("ckpts"),
    };
    let mut seen = Vec::new();
    let mut events = |event: TrainEvent| seen.push(event);
    job::run_job(&config, "tuned", &paths, false, &mut events, &CancelHandle::new(), None).unwrap();
    let loaded = seen
        .iter()
        .find_map(|e| match e {
            TrainEvent::WeightsLoaded {
                tensors,
                head_kept,
                head_note,
                ..
            } => Some((*tensors, *head_kept, head_note.clone())),
            _ => None,
        })
        .expect("a weights event");
    assert_eq!(loaded.0, 260, "every tensor but the head's two");
    assert!(!loaded.1);
    assert!(
        loaded.2.unwrap().contains("[1000, 1280]"),
        "the head is re-initialised, and why"
    );

    // Epoch 1 trained the head only: the backbone's convolutions are the file's.
    let first = CheckpointRef::locate("tuned", &paths.ckpt_dir, Slot::Last).unwrap();
    let after_one = cxr8::train::weights::export_checkpoint(&first).unwrap();
    assert_eq!(safetensors_tensor(&after_one, stem_key), exported[stem_key].1);
    let predictor = Predictor::load(&first, &BackendKind::Cpu.device()).unwrap();
    let info = predictor.state().inference.clone().unwrap();
    assert!(
        (info.mean - 0.449).abs() < 1e-3 && (info.std - 0.226).abs() < 1e-3,
        "ImageNet constants"
    );

    // A backbone learning rate a million times below the head's: the backbone moves, barely.
    let slow = TrainConfig {
        freeze_backbone_epochs: 0,
        backbone_lr_factor: 1e-6,
        ..config.clone()
    };
    job::run_job(&slow, "slow", &paths, false, &mut |_| {}, &CancelHandle::new(), None).unwrap();
    let slow_ckpt = CheckpointRef::locate("slow", &paths.ckpt_dir, Slot::Last).unwrap();
    let moved = safetensors_tensor(&cxr8::train::weights::export_checkpoint(&slow_ckpt).unwrap(), stem_key);
    let most = moved
        .iter()
        .zip(&exported[stem_key].1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(most > 0.0 && most < 1e-4, "backbone moved by {most}");

    // Resumed for a second epoch: the weights are not loaded again, and the backbone now learns.
    let more = TrainConfig { epochs: 2, ..config };
    let mut seen = Vec::new();
    let mut events = |event: TrainEvent| seen.push(event);
    job::run_job(&more, "tuned", &paths, true, &mut events, &CancelHandle::new(), None).unwrap();
    assert!(!seen.iter().any(|e| matches!(e, TrainEvent::WeightsLoaded { .. })));
    let last = CheckpointRef::locate("tuned", &paths.ckpt_dir, Slot::Last).unwrap();
    let after_two = cxr8::train::weights::export_checkpoint(&last).unwrap();
    assert_ne!(safetensors_tensor(&after_two, stem_key), exported[stem_key].1);

    // It predicts like any run, and its export has the metadata PyTorch users need.
    let predictor = Predictor::load(&last, &BackendKind::Cpu.device()).unwrap();
    let probabilities = predictor
        .predict_path(&first_image(&report.out.join("images")))
        .unwrap();
    assert_eq!(probabilities.len(), predictor.labels().len());
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&after_two).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    assert_eq!(metadata["architecture"], "mobilenet-v2");
    let labels: Vec<String> = serde_json::from_str(&metadata["labels"]).unwrap();
    assert_eq!(labels, predictor.labels());
    assert_eq!(metadata["image_size"], "64");

    // `cxr8 import` makes a checkpoint every command takes, listed in the run store.
    let three = Classifier::new(&spec, 3, &BackendKind::Cpu.device());
    let three_path = tmp.path().join("three.safetensors");
    let three_tensors = torchvision::export(&three, &spec).unwrap();
    std::fs::write(
        &three_path,
        torchvision::safetensors_bytes(&three_tensors, &Default::default()).unwrap(),
    )
    .unwrap();
    let imported = tmp.path().join("imported");
    let store_dir = tmp.path().join("store");
    let out = cxr8(&[
        "import",
        "--weights",
        three_path.to_str().unwrap(),
        "--model",
        "mobilenet-v2",
        "--image-size",
        "64",
        "--labels",
        "Effusion,Mass,Nodule",
        "--out",
        imported.to_str().unwrap(),
        "--data-dir",
        store_dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("imported 262 tensors") && stdout.contains("Effusion, Mass, Nodule"),
        "{stdout}"
    );
    let image = first_image(&report.out.join("images"));
    let heat = tmp.path().join("heat");
    let out = cxr8(&[
        "predict",
        "--checkpoint",
        imported.to_str().unwrap(),
        image.to_str().unwrap(),
        "--heatmap",
        heat.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nodule"));
    assert_eq!(std::fs::read_dir(&heat).unwrap().count(), 1, "a Grad-CAM overlay");
    let out = cxr8(&[
        "eval",
        "--checkpoint",
        imported.to_str().unwrap(),
        "--labels",
        report.label_file.to_str().unwrap(),
        "--images",
        report.out.join("images").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported_again = tmp.path().join("again.safetensors");
    let out = cxr8(&[
        "export",
        "--checkpoint",
        imported.to_str().unwrap(),
        "--out",
        exported_again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&exported_again).unwrap();
    for key in [
        "features.3.conv.1.0.weight",
        "classifier.1.weight",
        "features.18.1.running_var",
    ] {
        assert_eq!(
            safetensors_tensor(&bytes, key),
            three_tensors[key].1,
            "{key} round-trips"
        );
    }
    let listed = cxr8::store::Store::open(&store_dir).unwrap().runs().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, cxr8::store::RunStatus::Done);
    assert!(listed[0].name.contains("three.safetensors"));

    // A file that does not fit fails the run at once, naming the key and both shapes.
    let mut broken = exported.clone();
    broken.insert("features.5.conv.1.0.weight".into(), (vec![3, 3], vec![0.0; 9]));
    let broken_path = tmp.path().join("broken.safetensors");
    std::fs::write(
        &broken_path,
        torchvision::safetensors_bytes(&broken, &Default::default()).unwrap(),
    )
    .unwrap();
    let bad = TrainConfig {
        init_weights: Some(broken_path),
        ..more
    };
    let err = job::run_job(&bad, "broken", &paths, false, &mut |_| {}, &CancelHandle::new(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'features.5.conv.1.0.weight' has shape [3, 3]"), "{err}");
}

#[test]
fn predict_heatmap_says_when_a_map_is_empty_and_skips_it_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_dir, _) = crate::util::empty_map_checkpoint(tmp.path());
    let image_path = tmp.path().join("wide.png");
    image::GrayImage::from_fn(80, 64, |x, y| image::Luma([((x * 7 + y * 13) % 256) as u8]))
        .save(&image_path)
        .unwrap();
    let heat_dir = tmp.path().join("heat");
    let (run_dir, heat_dir, image) = (
        run_dir.to_str().unwrap(),
        heat_dir.to_str().unwrap(),
        image_path.to_str().unwrap(),
    );

    // Default: the two more probable labels have empty maps, so Effusion's is written, and the
    // output says why.
    let out = cxr8(&["predict", "--checkpoint", run_dir, "--heatmap", heat_dir, image]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "Grad-CAM for Effusion: {}",
            Path::new(heat_dir).join("wide.Effusion.gradcam.png").display()
        )) && stdout.contains("No region raises the score for Hernia, Mass on this image: their maps are empty."),
        "{stdout}"
    );

    // Asked for an empty label: flagged in the JSON, said in words, the PNG hatched.
    let out = cxr8(&[
        "predict",
        "--checkpoint",
        run_dir,
        "--heatmap",
        heat_dir,
        "--label",
        "hernia",
        "--json",
        image,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &json[0];
    assert_eq!(
        (&first["heatmap_label"], &first["heatmap_empty"], &first["heatmap_peak"]),
        (
            &serde_json::json!("Hernia"),
            &serde_json::json!(true),
            &serde_json::json!(0.0)
        ),
        "{json}"
    );
    assert!(
        first["heatmap_note"]
            .as_str()
            .unwrap()
            .starts_with("No region raises the score for Hernia on this image: its Grad-CAM is empty"),
        "{json}"
    );
    let png = image::open(first["heatmap"].as_str().unwrap()).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (64, 64), "the centre square the model sees");
    let frame = png.get_pixel(0, 32).0;
    assert!(
        frame[0] > frame[1] && frame[1] > frame[2] + 40,
        "amber frame: {frame:?}"
    );
}

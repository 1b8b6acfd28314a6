//! `cxr8 eval --predictions`: the binary end to end on small CSV files.

use std::path::Path;
use std::process::{Command, Output};

/// One-hot labels: canonical order is Effusion, Mass, Hernia whatever the column order.
/// Hernia has no positives; `g` has no prediction (predictions may cover a subset).
const LABELS: &str = "id,subject_id,Hernia,Effusion,Mass\n\
a,1,0,1,0\nb,1,0,0,1\nc,2,0,1,1\nd,3,0,0,0\ne,4,0,0,1\nf,5,0,1,0\ng,6,0,1,0\n";

/// Mixed column spellings and order; Mass has tied scores.
const PREDICTIONS: &str = "Image Index,prob_mass,Hernia,prob_Effusion\n\
a,0.3,0.1,0.8\nb,0.6,0.2,0.4\nc,0.6,0.6,0.8\nd,0.3,0.1,0.2\ne,0.2,0.1,0.4\nf,0.6,0.3,0.6\n";

fn eval(dir: &Path, labels: &str, predictions: &str, extra: &[&str]) -> Output {
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
    std::fs::write(dir.join("preds.csv"), predictions).unwrap();
    Command::new(env!("CARGO_BIN_EXE_cxr8"))
        .arg("eval")
        .arg("--predictions")
        .arg(dir.join("preds.csv"))
        .arg("--labels")
        .arg(dir.join("labels.csv"))
        .args(extra)
        .output()
        .expect("run cxr8")
}

fn close(value: &serde_json::Value, expected: f64, message: &str) {
    let actual = value
        .as_f64()
        .unwrap_or_else(|| panic!("{message}: not a number: {value}"));
    assert!((actual - expected).abs() < 1e-12, "{message}: {actual} != {expected}");
}

#[test]
fn json_has_the_documented_shape_and_sklearn_values() {
    let dir = tempfile::tempdir().unwrap();
    let output = eval(dir.path(), LABELS, PREDICTIONS, &["--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");

    let labels = json["labels"]
        .as_object()
        .expect("'labels' is an object keyed by label");
    let names: Vec<&String> = labels.keys().collect();
    assert_eq!(names, ["Effusion", "Hernia", "Mass"]);
    for (name, metrics) in labels {
        for key in ["auroc", "ap", "f1", "tp", "fp", "fn", "tn", "support"] {
            assert!(metrics.get(key).is_some(), "{name} lacks '{key}': {metrics}");
        }
    }
    // scikit-learn 1.9.1 on Y/P of the 6 predicted rows, P float32, pred = P >= 0.5:
    // roc_auc_score, average_precision_score, f1_score(zero_division=np.nan) per column,
    // multilabel_confusion_matrix(Y, pred).
    close(&labels["Effusion"]["auroc"], 1.0, "Effusion AUROC");
    close(
        &labels["Mass"]["auroc"],
        0.5555555555555556,
        "Mass AUROC (ties at 0.6 and 0.3)",
    );
    close(&labels["Mass"]["ap"], 0.6111111111111112, "Mass AP");
    close(&labels["Mass"]["f1"], 0.6666666666666666, "Mass F1");
    let mass = &labels["Mass"];
    assert_eq!(
        [&mass["tp"], &mass["fp"], &mass["fn"], &mass["tn"], &mass["support"]],
        [2, 1, 1, 2, 3],
        "Mass confusion counts"
    );
    assert!(labels["Hernia"]["auroc"].is_null(), "no positives: AUROC null, not 0.5");
    assert!(labels["Hernia"]["ap"].is_null(), "no positives: AP null");
    close(
        &labels["Hernia"]["f1"],
        0.0,
        "Hernia has one false alarm: F1 is a real 0",
    );
    close(
        &json["mean_auroc"],
        (1.0 + 0.5555555555555556) / 2.0,
        "mean over the 2 defined labels",
    );
    close(
        &json["map"],
        (1.0 + 0.6111111111111112) / 2.0,
        "mAP over the 2 defined labels",
    );
    assert_eq!(json["auroc_defined"], 2);
    assert_eq!(json["rows"], 6, "only predicted images are scored");
}

#[test]
fn text_output_is_a_table_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = eval(dir.path(), LABELS, PREDICTIONS, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Label") && lines[0].contains("AUROC"), "{text}");
    let mass = lines.iter().find(|l| l.starts_with("Mass")).expect("a Mass row");
    assert!(mass.contains("0.5556") && mass.contains("0.6111"), "{mass}");
    let hernia = lines.iter().find(|l| l.starts_with("Hernia")).expect("a Hernia row");
    assert!(hernia.contains("n/a"), "{hernia}");
    assert!(
        lines[..4].iter().all(|l| l.len() == lines[0].len()),
        "header and rows aligned:\n{text}"
    );
    assert!(text.contains("mean AUROC: 0.7778 over 2 of 3 labels"), "{text}");
    assert!(text.contains("images evaluated: 6 of 7"), "{text}");
}

#[test]
fn single_label_data_gets_a_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let labels = "id,subject_id,Mass,Hernia\na,1,1,0\nb,2,0,1\nc,3,0,1\n";
    let predictions = "id,Mass,Hernia\na,0.7,0.3\nb,0.6,0.4\nc,0.1,0.9\n";
    let output = eval(dir.path(), labels, predictions, &["--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["task"], "single-label");
    assert_eq!(
        json["confusion"],
        serde_json::json!([[1, 0], [1, 1]]),
        "rows true, columns predicted"
    );
    close(&json["balanced_accuracy"], 0.75, "mean of recalls 1 and 1/2");
}

#[test]
fn bad_predictions_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "id,Mass,Effusion,Hernia\na,0.5,0.5,0.5\nzz1,0,0,0\nzz2,0,0,0\n",
            "2 image id(s) in the predictions are not in the label file",
        ),
        (
            "id,Mass,Effusion,Hernia\na,0.5,2,0.5\n",
            "line 2, column 'Effusion': 2 is not a probability",
        ),
        (
            "id,Mass,Hernia\na,0.5,0.5\n",
            "no probability column for 1 of the label file's labels: Effusion",
        ),
    ];
    for (predictions, expected) in cases {
        let output = eval(dir.path(), LABELS, predictions, &["--json"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "accepted {predictions:?}");
        assert!(stderr.contains(expected), "for {predictions:?}: {stderr}");
        assert!(stderr.contains("preds.csv"), "names the file: {stderr}");
    }
}

#[test]
fn predictions_or_a_future_checkpoint_is_required() {
    let output = Command::new(env!("CARGO_BIN_EXE_cxr8"))
        .args(["eval", "--labels", "x.csv"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--predictions"));
}

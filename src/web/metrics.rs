//! Reading the store's per-epoch metric JSON for display: every key is optional, values may be
//! missing or non-numeric, and nothing here fails. Also time and config helpers for the pages.

use serde::Serialize;
use serde_json::Value;

use crate::store::{EpochRow, Run};

/// Keys shown first, in this order, wherever metrics are listed; other numeric keys follow by name.
pub const PREFERRED_KEYS: [&str; 8] = [
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "val_mean_auroc",
    "lr",
    "seconds",
    "val_mean_ap",
];

/// The metric by which runs are ranked and the best epoch is chosen when the run does not say.
pub const RANKING_KEY: &str = "val_mean_auroc";

pub fn number(metrics: &Value, key: &str) -> Option<f64> {
    metrics.get(key)?.as_f64()
}

/// `(epoch, value)` points of one metric, skipping epochs without it.
pub fn series(epochs: &[EpochRow], key: &str) -> Vec<(f64, f64)> {
    epochs
        .iter()
        .filter_map(|e| Some((e.epoch as f64, number(&e.metrics, key)?)))
        .collect()
}

/// Numeric top-level keys present in any epoch: preferred ones first, then the rest sorted.
pub fn scalar_keys(epochs: &[EpochRow]) -> Vec<String> {
    let mut others = std::collections::BTreeSet::new();
    let mut present = std::collections::HashSet::new();
    for e in epochs {
        if let Some(object) = e.metrics.as_object() {
            for (k, v) in object {
                if v.is_number() {
                    present.insert(k.clone());
                    if !PREFERRED_KEYS.contains(&k.as_str()) {
                        others.insert(k.clone());
                    }
                }
            }
        }
    }
    PREFERRED_KEYS
        .iter()
        .filter(|k| present.contains(**k))
        .map(|k| k.to_string())
        .chain(others)
        .collect()
}

/// The epochs table's columns: [`scalar_keys`] without what is not a metric to read — the epoch
/// number (the table's first column already), the counts of labels a mean was taken over
/// (`*_defined`), the bookkeeping counts (`*_rows`: images scored; `*_non_finite_outputs`, which
/// the run's log reports when not 0), and the legacy `accuracy` (top-1 or per-label depending on
/// the task; the named accuracies are there instead).
pub fn table_keys(epochs: &[EpochRow]) -> Vec<String> {
    scalar_keys(epochs)
        .into_iter()
        .filter(|k| {
            k != "epoch"
                && !k.ends_with("_defined")
                && !k.ends_with("_rows")
                && !k.ends_with("_non_finite_outputs")
                && k != "train_accuracy"
                && k != "val_accuracy"
        })
        .collect()
}

/// One label's validation metrics at one epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelMetrics {
    pub label: String,
    pub auroc: Option<f64>,
    pub ap: Option<f64>,
    pub f1: Option<f64>,
    pub tp: Option<u64>,
    pub fp: Option<u64>,
    #[serde(rename = "fn")]
    pub fn_: Option<u64>,
    pub tn: Option<u64>,
    pub support: Option<u64>,
    /// The max-F1 threshold tuned on this split.
    pub threshold: Option<f64>,
    /// `[[tn, fp], [fn, tp]]` at `threshold` (absent in runs recorded before they were kept).
    pub tuned: Option<[[u64; 2]; 2]>,
}

impl LabelMetrics {
    /// `[[tn, fp], [fn, tp]]` (rows: actual negative/positive) at 0.5, when all four counts are
    /// known.
    pub fn confusion(&self) -> Option<Vec<Vec<u64>>> {
        Some(vec![vec![self.tn?, self.fp?], vec![self.fn_?, self.tp?]])
    }
}

/// A single-label epoch's N×N validation confusion matrix (`[actual][predicted]`, in the order of
/// its per-label rows), when it has one whose rows are all numbers.
pub fn class_confusion(metrics: &Value) -> Option<Vec<Vec<u64>>> {
    metrics
        .get("val_confusion")?
        .as_array()?
        .iter()
        .map(|row| row.as_array()?.iter().map(Value::as_u64).collect())
        .collect()
}

pub fn per_label(metrics: &Value) -> Vec<LabelMetrics> {
    let Some(rows) = metrics.get("val_per_label").and_then(Value::as_array) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| {
            let label = row.get("label")?.as_str()?.to_string();
            let f = |k: &str| row.get(k).and_then(Value::as_f64);
            let n = |k: &str| row.get(k).and_then(Value::as_u64);
            let tuned = row.get("tuned").and_then(|t| {
                let c = |k: &str| t.get(k).and_then(Value::as_u64);
                Some([[c("tn")?, c("fp")?], [c("fn")?, c("tp")?]])
            });
            Some(LabelMetrics {
                label,
                auroc: f("auroc"),
                ap: f("ap"),
                f1: f("f1"),
                tp: n("tp"),
                fp: n("fp"),
                fn_: n("fn"),
                tn: n("tn"),
                support: n("support"),
                threshold: f("threshold"),
                tuned,
            })
        })
        .collect()
}

/// The run's best epoch: the one the trainer recorded, else the highest mean AUROC, else the last.
pub fn best_epoch<'a>(run: &Run, epochs: &'a [EpochRow]) -> Option<&'a EpochRow> {
    if let Some(best) = run.best_epoch.and_then(|b| epochs.iter().find(|e| e.epoch == b)) {
        return Some(best);
    }
    epochs
        .iter()
        .filter(|e| number(&e.metrics, RANKING_KEY).is_some_and(f64::is_finite))
        .max_by(|a, b| {
            let value = |e: &EpochRow| number(&e.metrics, RANKING_KEY).unwrap_or(f64::MIN);
            value(a).total_cmp(&value(b))
        })
        .or(epochs.last())
}

/// The epoch row asked for, or the best one when none (or an unknown one) is asked for.
pub fn chosen_epoch<'a>(run: &Run, epochs: &'a [EpochRow], wanted: Option<u32>) -> Option<&'a EpochRow> {
    wanted
        .and_then(|w| epochs.iter().find(|e| e.epoch == w))
        .or_else(|| best_epoch(run, epochs))
}

/// Seconds since the Unix epoch of a store timestamp (`2026-11-29T03:45:12.345Z`).
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let (date, clock) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.splitn(3, ':');
    let (hour, minute) = (c.next()?.parse::<i64>().ok()?, c.next()?.parse::<i64>().ok()?);
    let second: f64 = c.next()?.parse().ok()?;
    // Days from civil date (proleptic Gregorian), after H. Hinnant's "chrono-compatible
    // low-level date algorithms".
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + hour * 3_600 + minute * 60) as f64 + second)
}

/// How long a run has trained: start to finish, or start to now while it runs.
pub fn duration_seconds(run: &Run, now: &str) -> Option<f64> {
    let start = parse_timestamp(run.started_at.as_deref()?)?;
    let end = parse_timestamp(run.finished_at.as_deref().unwrap_or(now))?;
    Some((end - start).max(0.0))
}

/// `42s`, `7m 05s`, `3h 02m`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A metric value for a table cell: 4 significant decimals, small numbers (learning rates) in
/// scientific notation, `–` when absent.
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if !v.is_finite() => v.to_string(),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.2e}"),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e9 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// A stored number as the user typed it. Config fields held as f32 come back from JSON as the
/// f64 nearest that f32 (0.1 → 0.10000000149011612): those print as the shortest decimal that
/// reads back to the same f32 ("0.1"); every other number prints as JSON has it.
pub fn number_as_entered(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(v) if !n.is_i64() && !n.is_u64() && v.is_finite() && (v as f32) as f64 == v => (v as f32).to_string(),
        _ => n.to_string(),
    }
}

/// A config as `(dotted.key, value)` rows, sorted by key; strings without quotes.
pub fn flatten_config(config: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Number(n) => out.push((prefix.to_string(), number_as_entered(n))),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn epoch(epoch: u32, metrics: Value) -> EpochRow {
        EpochRow {
            epoch,
            metrics,
            committed_at: String::new(),
        }
    }

    #[test]
    fn missing_and_odd_values_are_skipped() {
        let epochs = [
            epoch(1, json!({"val_loss": 0.9, "zeta": 1, "note": "x"})),
            epoch(2, json!({"val_loss": "oops", "lr": 0.001})),
            epoch(3, json!("unreadable")),
        ];
        assert_eq!(series(&epochs, "val_loss"), [(1.0, 0.9)]);
        assert_eq!(scalar_keys(&epochs), ["val_loss", "lr", "zeta"]);
    }

    #[test]
    fn per_label_rows_and_confusion() {
        let m = json!({"val_per_label": [
            {"label": "Effusion", "auroc": 0.8, "tp": 5, "fp": 2, "fn": 1, "tn": 40},
            {"auroc": 0.5},
            {"label": "Hernia"}
        ]});
        let rows = per_label(&m);
        assert_eq!(rows.len(), 2, "a row without a label is dropped");
        assert_eq!(rows[0].confusion(), Some(vec![vec![40, 2], vec![1, 5]]));
        assert_eq!(rows[1].confusion(), None);
        assert_eq!(rows[0].tuned, None, "rows from before tuned counts were kept");
        let tuned = json!({"val_per_label": [{"label": "Mass", "threshold": 0.3,
            "tuned": {"tp": 4, "fp": 9, "fn": 2, "tn": 85}}]});
        let row = &per_label(&tuned)[0];
        assert_eq!((row.threshold, row.tuned), (Some(0.3), Some([[85, 9], [2, 4]])));
    }

    #[test]
    fn the_class_confusion_matrix_is_read_whole_or_not_at_all() {
        let m = json!({"val_confusion": [[3, 1], [0, 4]]});
        assert_eq!(class_confusion(&m), Some(vec![vec![3, 1], vec![0, 4]]));
        assert_eq!(class_confusion(&json!({"val_confusion": [[3, "x"]]})), None);
        assert_eq!(class_confusion(&json!({"val_confusion": null})), None);
        assert_eq!(class_confusion(&json!({})), None);
    }

    #[test]
    fn best_epoch_prefers_the_recorded_one_then_the_highest_auroc() {
        let run: Run = serde_json::from_value(json!({
            "id": "r", "name": "n", "status": "done", "config": {}, "dataset": "demo", "model": "m",
            "image_size": 64, "epochs_planned": 3, "epochs_done": 3, "best_epoch": null,
            "best_metric_name": null, "best_metric": null, "created_at": "", "started_at": null,
            "finished_at": null, "tags": [], "notes": "", "error": null, "checkpoint_dir": null, "device": null
        }))
        .unwrap();
        let epochs = [
            epoch(1, json!({"val_mean_auroc": 0.6})),
            epoch(2, json!({"val_mean_auroc": 0.7})),
            epoch(3, json!({"val_mean_auroc": f64::NAN})),
        ];
        assert_eq!(best_epoch(&run, &epochs).unwrap().epoch, 2);
        let recorded = Run {
            best_epoch: Some(1),
            ..run.clone()
        };
        assert_eq!(best_epoch(&recorded, &epochs).unwrap().epoch, 1);
        assert_eq!(chosen_epoch(&run, &epochs, Some(3)).unwrap().epoch, 3);
        assert_eq!(
            chosen_epoch(&run, &epochs, Some(9)).unwrap().epoch,
            2,
            "unknown epoch: best"
        );
    }

    #[test]
    fn timestamps_and_durations() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(parse_timestamp("2000-03-01T00:00:01.500Z"), Some(951_868_801.5));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(format_duration(42.0), "42s");
        assert_eq!(format_duration(425.0), "7m 05s");
        assert_eq!(format_duration(10_920.0), "3h 02m");
    }

    #[test]
    fn values_and_configs_format_for_tables() {
        assert_eq!(format_value(None), "–");
        assert_eq!(format_value(Some(0.81234)), "0.8123");
        assert_eq!(format_value(Some(0.0001)), "1.00e-4");
        assert_eq!(format_value(Some(12.0)), "12");
        // An f32 field's 0.1 is stored as 0.10000000149011612 and shown as typed; an f64 keeps
        // its own shortest form; integers stay integers.
        let stored_f32 = f64::from(0.1f32);
        let shown = flatten_config(&json!({"brightness": stored_f32, "lr": 0.001, "epochs": 10, "big": 1e300}));
        assert_eq!(
            shown,
            [
                ("big".to_string(), "1e+300".to_string()),
                ("brightness".to_string(), "0.1".to_string()),
                ("epochs".to_string(), "10".to_string()),
                ("lr".to_string(), "0.001".to_string()),
            ]
        );
        let rows = flatten_config(&json!({"model": "resnet-18", "optim": {"lr": 0.001, "wd": 0}}));
        assert_eq!(
            rows,
            [
                ("model".to_string(), "resnet-18".to_string()),
                ("optim.lr".into(), "0.001".into()),
                ("optim.wd".into(), "0".into())
            ]
        );
    }
}

//! The x-axis of every line chart, `?x=epoch|step|time`, and the series placed on it: epoch-level
//! metrics at each epoch's number, at the global step where it ended, or at the run's training
//! clock when it ended; on the step and time axes the step points (the step-level training
//! curve) join the metric they refine. Plain series out, for whichever renderer draws them.

use crate::store::{EpochRow, StepPoint};
use crate::web::charts::{LineChart, Series, XAxis};
use crate::web::metrics;

/// The `?x=` values, in the order the pages offer them.
pub const AXIS_NAMES: [&str; 3] = ["epoch", "step", "time"];

/// Parses `?x=` (absent or empty: the epoch axis).
pub fn parse(text: Option<&str>) -> Result<XAxis, String> {
    match text.map(str::trim) {
        None | Some("") | Some("epoch") => Ok(XAxis::Epoch),
        Some("step") => Ok(XAxis::Step),
        Some("time") => Ok(XAxis::Time),
        Some(other) => Err(format!(
            "x must be one of {} (the charts' x-axis), not '{other}'",
            AXIS_NAMES.join(", ")
        )),
    }
}

/// The `?x=` value of an axis.
pub fn name(axis: XAxis) -> &'static str {
    match axis {
        XAxis::Epoch => AXIS_NAMES[0],
        XAxis::Step => AXIS_NAMES[1],
        XAxis::Time => AXIS_NAMES[2],
    }
}

/// Where each epoch sits on `axis`, `None` where unknown: its number; the global step at its end;
/// the training clock at its end (epochs recorded before the clock was kept: the sum of their
/// durations so far, which is the same clock without time lost to a restart).
pub fn epoch_positions(epochs: &[EpochRow], axis: XAxis) -> Vec<Option<f64>> {
    let mut elapsed = Some(0.0);
    epochs
        .iter()
        .map(|e| match axis {
            XAxis::Epoch => Some(e.epoch as f64),
            XAxis::Step => metrics::number(&e.metrics, "step"),
            XAxis::Time => {
                elapsed = elapsed.zip(metrics::number(&e.metrics, "seconds")).map(|(a, b)| a + b);
                metrics::number(&e.metrics, "wall_seconds").or(elapsed)
            }
        })
        .collect()
}

/// One epoch-level metric on `axis`, skipping epochs without it or without a position.
pub fn epoch_series(epochs: &[EpochRow], key: &str, axis: XAxis) -> Vec<(f64, f64)> {
    if axis == XAxis::Epoch {
        return metrics::series(epochs, key);
    }
    epoch_positions(epochs, axis)
        .into_iter()
        .zip(epochs)
        .filter_map(|(x, e)| Some((x?, metrics::number(&e.metrics, key)?)))
        .collect()
}

/// A number each step point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepField {
    Loss,
    Top1Accuracy,
    ExactMatch,
    Lr,
}

/// The step-level line that refines an epoch-level training metric, with its legend.
pub fn step_counterpart(key: &str) -> Option<(StepField, &'static str)> {
    match key {
        "train_loss" => Some((StepField::Loss, "train, per step (window mean)")),
        // Single-label runs chart balanced accuracy per epoch; per step, top-1 over the window.
        "train_balanced_accuracy" | "train_top1_accuracy" => {
            Some((StepField::Top1Accuracy, "train top-1, per step (window)"))
        }
        "train_subset_accuracy" => Some((StepField::ExactMatch, "train exact-match, per step (window)")),
        "lr" => Some((StepField::Lr, "learning rate, per step")),
        _ => None,
    }
}

/// One field of the step points on `axis` (empty on the epoch axis, which stays as it was).
pub fn step_series(points: &[StepPoint], field: StepField, axis: XAxis) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| {
            let x = match axis {
                XAxis::Epoch => return None,
                XAxis::Step => p.step as f64,
                XAxis::Time => p.wall_seconds,
            };
            let y = match field {
                StepField::Loss => Some(p.loss),
                StepField::Top1Accuracy => p.top1_accuracy,
                StepField::ExactMatch => p.exact_match,
                StepField::Lr => Some(p.lr),
            };
            Some((x, y?))
        })
        .collect()
}

/// A run chart's lines: on the step and time axes first the step-level lines refining its
/// metrics, then each `(key, legend)` metric per epoch. The step line comes first so that it
/// keeps its colour while a live run's first epoch lands (epoch lines appear only then). Lines
/// without points are left out.
pub fn run_series(epochs: &[EpochRow], points: &[StepPoint], keys: &[(String, String)], axis: XAxis) -> Vec<Series> {
    let per_step = keys
        .iter()
        .filter_map(|(key, _)| step_counterpart(key))
        .map(|(field, legend)| Series::new(legend, step_series(points, field, axis)));
    let per_epoch = keys
        .iter()
        .map(|(key, legend)| Series::new(legend.clone(), epoch_series(epochs, key, axis)));
    per_step.chain(per_epoch).filter(|s| !s.points.is_empty()).collect()
}

/// One run's line of `key` on a compare chart: the step points where they refine a training
/// metric on the step or time axis (each run from its own step 0 and time 0), else its epochs.
pub fn compare_points(epochs: &[EpochRow], points: &[StepPoint], key: &str, axis: XAxis) -> Vec<(f64, f64)> {
    let fine = step_counterpart(key)
        .map(|(field, _)| step_series(points, field, axis))
        .unwrap_or_default();
    if fine.is_empty() {
        epoch_series(epochs, key, axis)
    } else {
        fine
    }
}

/// A unit that keeps time ticks short: seconds up to 3 minutes, minutes up to 3 hours, then hours.
fn time_unit(longest_seconds: f64) -> (f64, &'static str) {
    if longest_seconds <= 180.0 {
        (1.0, "s")
    } else if longest_seconds <= 3.0 * 3600.0 {
        (60.0, "min")
    } else {
        (3600.0, "h")
    }
}

/// Sets `chart`'s x-axis kind and label for `axis`; time series (in seconds) are rescaled to a
/// unit that suits the longest of them, named in the label.
pub fn fit_x(axis: XAxis, chart: &mut LineChart, series: &mut [Series]) {
    chart.x_axis = axis;
    chart.x_label = match axis {
        XAxis::Epoch => "epoch".into(),
        XAxis::Step => "step (batches trained)".into(),
        XAxis::Time => {
            let longest = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .fold(0.0, f64::max);
            let (seconds, unit) = time_unit(longest);
            for s in series.iter_mut() {
                for p in &mut s.points {
                    p.0 /= seconds;
                }
            }
            format!("training time ({unit})")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn epoch(n: u32, metrics: serde_json::Value) -> EpochRow {
        EpochRow {
            epoch: n,
            metrics,
            committed_at: String::new(),
        }
    }

    fn point(step: u64, wall_seconds: f64, loss: f64) -> StepPoint {
        StepPoint {
            step,
            epoch: 1,
            window_steps: 1,
            loss,
            top1_accuracy: Some(0.5),
            exact_match: None,
            images: step * 16,
            lr: 1e-3,
            wall_seconds,
        }
    }

    #[test]
    fn axis_names_parse_and_bad_ones_are_named() {
        for name in AXIS_NAMES {
            assert_eq!(super::name(parse(Some(name)).unwrap()), name);
        }
        assert_eq!(parse(None), Ok(XAxis::Epoch));
        let message = parse(Some("steps")).unwrap_err();
        assert!(
            message.contains("epoch, step, time") && message.contains("'steps'"),
            "{message}"
        );
    }

    #[test]
    fn epochs_sit_where_they_ended() {
        let epochs = [
            epoch(
                1,
                json!({"train_loss": 0.9, "step": 100, "wall_seconds": 70.0, "seconds": 60.0}),
            ),
            epoch(
                2,
                json!({"train_loss": 0.7, "step": 200, "wall_seconds": 140.0, "seconds": 60.0}),
            ),
        ];
        assert_eq!(
            epoch_series(&epochs, "train_loss", XAxis::Epoch),
            [(1.0, 0.9), (2.0, 0.7)]
        );
        assert_eq!(
            epoch_series(&epochs, "train_loss", XAxis::Step),
            [(100.0, 0.9), (200.0, 0.7)]
        );
        assert_eq!(
            epoch_series(&epochs, "train_loss", XAxis::Time),
            [(70.0, 0.9), (140.0, 0.7)]
        );
        // Recorded before the clock was kept: no step; the time is the sum of epoch durations.
        let old = [
            epoch(1, json!({"train_loss": 0.9, "seconds": 60.0})),
            epoch(2, json!({"train_loss": 0.7, "seconds": 30.0})),
        ];
        assert!(epoch_series(&old, "train_loss", XAxis::Step).is_empty());
        assert_eq!(
            epoch_series(&old, "train_loss", XAxis::Time),
            [(60.0, 0.9), (90.0, 0.7)]
        );
    }

    #[test]
    fn step_lines_join_the_metrics_they_refine_only_off_the_epoch_axis() {
        let epochs = [epoch(
            1,
            json!({"train_loss": 0.9, "val_loss": 1.0, "step": 4, "wall_seconds": 9.0}),
        )];
        let points = [point(2, 4.0, 1.2), point(4, 8.0, 0.8)];
        let keys = vec![
            ("train_loss".to_string(), "train".to_string()),
            ("val_loss".to_string(), "validation".to_string()),
        ];
        let names = |series: &[Series]| series.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let on_epochs = run_series(&epochs, &points, &keys, XAxis::Epoch);
        assert_eq!(names(&on_epochs), ["train", "validation"]);
        let on_steps = run_series(&epochs, &points, &keys, XAxis::Step);
        assert_eq!(
            names(&on_steps),
            ["train, per step (window mean)", "train", "validation"]
        );
        assert_eq!(on_steps[0].points, [(2.0, 1.2), (4.0, 0.8)]);
        assert_eq!(on_steps[1].points, [(4.0, 0.9)], "the epoch at the step where it ended");
        let on_time = run_series(&epochs, &points, &keys, XAxis::Time);
        assert_eq!(on_time[0].points, [(4.0, 1.2), (8.0, 0.8)]);
        assert_eq!(on_time[1].points, [(9.0, 0.9)]);
        // Compare: the finer line where there is one, else the epochs.
        assert_eq!(compare_points(&epochs, &points, "train_loss", XAxis::Step).len(), 2);
        assert_eq!(compare_points(&epochs, &points, "val_loss", XAxis::Step), [(4.0, 1.0)]);
        assert_eq!(
            compare_points(&epochs, &points, "train_loss", XAxis::Epoch),
            [(1.0, 0.9)]
        );
    }

    #[test]
    fn time_reads_in_a_unit_that_suits_the_run() {
        // (longest time in seconds, expected label, expected x of the last point)
        let cases = [
            (90.0, "training time (s)", 90.0),
            (1_800.0, "training time (min)", 30.0),
            (12_345.0, "training time (h)", 12_345.0 / 3600.0),
        ];
        for (seconds, label, last) in cases {
            let mut series = [Series::new("a", vec![(0.0, 1.0), (seconds, 2.0)])];
            let mut chart = LineChart::new("t");
            fit_x(XAxis::Time, &mut chart, &mut series);
            assert_eq!(chart.x_label, label);
            assert_eq!(chart.x_axis, XAxis::Time);
            assert!((series[0].points[1].0 - last).abs() < 1e-9, "{seconds}");
        }
    }
}

//! Held-out test results, scored once with the best checkpoint: per-label AUROC, AP, and F1,
//! sensitivity and specificity at thresholds tuned on validation (never on the test set), with
//! 95 % percentile-bootstrap confidence intervals for each label's AUROC and for mean AUROC.
//!
//! The bootstrap resamples patients when their ids are known (images of one patient are
//! correlated, so resampling images would make the intervals too narrow), images otherwise. Each
//! resample is a weight per image (how often its patient was drawn); AUROC under weights is the
//! Mann–Whitney statistic over a ranking sorted once per label, so 1,000 resamples of a 25,000
//! image test set cost a few seconds, not a sort per resample.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::metrics::{self, counts_at};
use crate::data::Task;

/// Bootstrap resamples behind every interval.
pub const RESAMPLES: usize = 1000;
/// Coverage of the intervals.
pub const LEVEL: f64 = 0.95;

/// One label on the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestLabel {
    /// Positives in the test set.
    pub support: u64,
    pub auroc: Option<f64>,
    /// 95 % bootstrap interval of `auroc`; `None` when AUROC is undefined or too few resamples had
    /// both classes.
    pub auroc_ci: Option<[f64; 2]>,
    pub ap: Option<f64>,
    /// The validation-tuned (max-F1) threshold, applied unchanged.
    pub threshold: f32,
    /// At `threshold`.
    pub f1: Option<f64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
}

/// Long-tail grouping of classes by training images, as the long-tailed recognition literature
/// and NIH-CXR-LT report it: many-shot above 100, medium-shot 20 to 100, few-shot below 20.
pub const MANY_SHOT_ABOVE: usize = 100;
pub const FEW_SHOT_BELOW: usize = 20;

/// One long-tail group of a single-label run's classes on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotGroup {
    /// `many`, `medium` or `few`.
    pub group: String,
    pub classes: Vec<String>,
    /// Mean recall (per-class accuracy) over the group's classes present in the test split.
    pub accuracy: Option<f64>,
}

/// Many / medium / few-shot accuracy from the test confusion matrix (`[true][predicted]`) and
/// each class's training images.
pub fn shot_groups(labels: &[String], confusion: &[Vec<u64>], train_counts: &[usize]) -> Vec<ShotGroup> {
    let group_of = |count: usize| {
        if count > MANY_SHOT_ABOVE {
            "many"
        } else if count >= FEW_SHOT_BELOW {
            "medium"
        } else {
            "few"
        }
    };
    ["many", "medium", "few"]
        .into_iter()
        .map(|group| {
            let members: Vec<usize> = (0..labels.len())
                .filter(|&c| group_of(train_counts[c]) == group)
                .collect();
            let recalls: Vec<f64> = members
                .iter()
                .filter_map(|&c| {
                    let support: u64 = confusion[c].iter().sum();
                    (support > 0).then(|| confusion[c][c] as f64 / support as f64)
                })
                .collect();
            ShotGroup {
                group: group.into(),
                classes: members.iter().map(|&c| labels[c].clone()).collect(),
                accuracy: (!recalls.is_empty()).then(|| recalls.iter().sum::<f64>() / recalls.len() as f64),
            }
        })
        .collect()
}

/// Points kept per curve: enough for a smooth plot, few enough to store with every run.
pub const CURVE_POINTS: usize = 64;

/// One label's ROC and precision-recall curves on one split, with the areas for a legend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelCurves {
    pub auroc: Option<f64>,
    pub ap: Option<f64>,
    /// (false-positive rate, true-positive rate), from (0, 0) to (1, 1).
    pub roc: Vec<[f32; 2]>,
    /// (recall, precision), recall rising.
    pub pr: Vec<[f32; 2]>,
}

/// Every label's curves (labels with both classes only), from probabilities `rows × labels`.
pub fn curves(labels: &[String], probs: &[f32], targets: &[f32]) -> BTreeMap<String, LabelCurves> {
    let width = labels.len();
    let mut out = BTreeMap::new();
    for (label, name) in labels.iter().enumerate() {
        let scores: Vec<f32> = metrics::column(probs, width, label).collect();
        let truth = metrics::truth_column(targets, width, label);
        if let Some(curve) = label_curves(&scores, &truth) {
            out.insert(name.clone(), curve);
        }
    }
    out
}

/// The curves of one label: every distinct threshold, highest first, thinned to
/// [`CURVE_POINTS`]; `None` without both positives and negatives.
fn label_curves(scores: &[f32], truth: &[bool]) -> Option<LabelCurves> {
    let positives = truth.iter().filter(|&&t| t).count() as f64;
    let negatives = truth.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut roc = vec![[0.0f32, 0.0]];
    let mut pr = Vec::new();
    for (i, &row) in order.iter().enumerate() {
        if truth[row] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let group_ends = order.get(i + 1).is_none_or(|&next| scores[next] != scores[row]);
        if group_ends {
            roc.push([(fp / negatives) as f32, (tp / positives) as f32]);
            pr.push([(tp / positives) as f32, (tp / (tp + fp)) as f32]);
        }
    }
    Some(LabelCurves {
        auroc: metrics::roc_auc(scores, truth),
        ap: metrics::average_precision(scores, truth),
        roc: thin(roc),
        pr: thin(pr),
    })
}

/// At most [`CURVE_POINTS`] points, evenly spaced along the curve, first and last kept.
fn thin(points: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    if points.len() <= CURVE_POINTS {
        return points;
    }
    let last = points.len() - 1;
    (0..CURVE_POINTS)
        .map(|k| points[k * last / (CURVE_POINTS - 1)])
        .collect()
}

/// How the intervals were made, so a reader can reproduce them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
    /// `patient` when patients were resampled, `image` when no patient ids were known.
    pub unit: String,
    /// Patients (or images) resampled.
    pub units: usize,
}

/// A run's held-out test results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    pub images: usize,
    /// The checkpoint's epoch that was scored (the run's best).
    pub epoch: Option<usize>,
    pub mean_auroc: Option<f64>,
    pub mean_auroc_ci: Option<[f64; 2]>,
    /// Labels whose AUROC is defined (both classes present) and so enter `mean_auroc`.
    pub auroc_defined: usize,
    pub map: Option<f64>,
    pub labels: BTreeMap<String, TestLabel>,
    /// Single-label runs: top-1 accuracy, mean per-class recall, and `confusion[true][predicted]`.
    pub accuracy: Option<f64>,
    pub balanced_accuracy: Option<f64>,
    pub confusion: Option<Vec<Vec<u64>>>,
    /// Multi-label runs: share of images whose every label is right at the tuned thresholds.
    pub exact_match: Option<f64>,
    pub bootstrap: Option<Bootstrap>,
    /// Why there are no numbers (an empty test split), for the pages.
    pub note: Option<String>,
    /// Per-label ROC and PR curves on the test split, and on validation with the same (best)
    /// checkpoint, for the run and compare pages.
    #[serde(default)]
    pub curves: BTreeMap<String, LabelCurves>,
    #[serde(default)]
    pub val_curves: BTreeMap<String, LabelCurves>,
    /// Single-label runs: accuracy of the many-, medium- and few-shot classes.
    #[serde(default)]
    pub shot_groups: Vec<ShotGroup>,
}

impl TestReport {
    /// The report of a run whose test split is empty: it says so instead of numbers.
    pub fn empty(note: impl Into<String>) -> TestReport {
        TestReport {
            images: 0,
            epoch: None,
            mean_auroc: None,
            mean_auroc_ci: None,
            auroc_defined: 0,
            map: None,
            labels: BTreeMap::new(),
            accuracy: None,
            balanced_accuracy: None,
            confusion: None,
            exact_match: None,
            bootstrap: None,
            note: Some(note.into()),
            curves: BTreeMap::new(),
            val_curves: BTreeMap::new(),
            shot_groups: Vec::new(),
        }
    }
}

/// Scores test probabilities (`rows × labels`, row-major) against targets with the given
/// validation thresholds. `patients[i]` names image `i`'s patient (empty: resample images).
///
/// # Panics
/// If the buffers are not `rows × labels`, or `thresholds` or a non-empty `patients` has the
/// wrong length.
pub fn score(
    labels: &[String],
    task: Task,
    probs: &[f32],
    targets: &[f32],
    thresholds: &[f32],
    patients: &[String],
    seed: u64,
) -> TestReport {
    let width = labels.len();
    assert_eq!(thresholds.len(), width, "one threshold per label");
    let evaluation = metrics::evaluate(labels, task, probs, targets, Some(thresholds));
    let rows = evaluation.rows;
    if rows == 0 {
        return TestReport::empty("the test split has no images");
    }
    assert!(
        patients.is_empty() || patients.len() == rows,
        "one patient id per image"
    );

    let columns: Vec<(Vec<f32>, Vec<bool>)> = (0..width)
        .map(|label| {
            let scores = metrics::column(probs, width, label).collect();
            let truth = metrics::truth_column(targets, width, label);
            (scores, truth)
        })
        .collect();
    let (units, unit_of) = resampling_units(patients, rows);
    let intervals = bootstrap_auroc(&columns, &unit_of, units, seed);

    let mut per_label = BTreeMap::new();
    for (label, ((scores, truth), metrics)) in columns.iter().zip(&evaluation.per_label).enumerate() {
        let counts = counts_at(scores, truth, thresholds[label]);
        let share = |hits: u64, misses: u64| (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
        per_label.insert(
            labels[label].clone(),
            TestLabel {
                support: metrics.support,
                auroc: metrics.auroc,
                auroc_ci: metrics.auroc.and(intervals.per_label[label]),
                ap: metrics.ap,
                threshold: thresholds[label],
                f1: counts.f1(),
                sensitivity: share(counts.tp, counts.fn_),
                specificity: share(counts.tn, counts.fp),
            },
        );
    }
    let exact_match = match task {
        Task::MultiLabel => {
            let right = probs
                .chunks_exact(width)
                .zip(targets.chunks_exact(width))
                .filter(|(p, t)| (0..width).all(|l| (p[l] >= thresholds[l]) == (t[l] >= 0.5)))
                .count();
            Some(right as f64 / rows as f64)
        }
        Task::SingleLabel => None,
    };
    TestReport {
        images: rows,
        epoch: None,
        mean_auroc: evaluation.mean_auroc,
        mean_auroc_ci: evaluation.mean_auroc.and(intervals.mean),
        auroc_defined: evaluation.auroc_defined,
        map: evaluation.map,
        labels: per_label,
        accuracy: match task {
            Task::SingleLabel => evaluation.top1_accuracy,
            Task::MultiLabel => None,
        },
        balanced_accuracy: evaluation.balanced_accuracy,
        confusion: evaluation.confusion,
        exact_match,
        bootstrap: Some(Bootstrap {
            resamples: RESAMPLES,
            level: LEVEL,
            seed,
            unit: if patients.is_empty() { "image" } else { "patient" }.into(),
            units,
        }),
        note: None,
        curves: curves(labels, probs, targets),
        val_curves: BTreeMap::new(),
        shot_groups: Vec::new(),
    }
}

/// Resampling units: one per distinct patient (in order of first appearance), or one per image.
fn resampling_units(patients: &[String], rows: usize) -> (usize, Vec<usize>) {
    if patients.is_empty() {
        return (rows, (0..rows).collect());
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let unit_of = patients
        .iter()
        .map(|p| {
            let next = ids.len();
            *ids.entry(p.as_str()).or_insert(next)
        })
        .collect();
    (ids.len(), unit_of)
}

/// Percentile intervals of each label's AUROC and of their mean.
struct Intervals {
    per_label: Vec<Option<[f64; 2]>>,
    mean: Option<[f64; 2]>,
}

/// `RESAMPLES` resamples of the units with replacement (seeded); each label's AUROC on every
/// resample where it is defined, and the mean over the labels defined in that resample.
fn bootstrap_auroc(columns: &[(Vec<f32>, Vec<bool>)], unit_of: &[usize], units: usize, seed: u64) -> Intervals {
    let orders: Vec<Vec<usize>> = columns
        .iter()
        .map(|(scores, _)| {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
            order
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws = vec![0u32; units];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); columns.len()];
    let mut means = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        draws.iter_mut().for_each(|d| *d = 0);
        for _ in 0..units {
            draws[rng.random_range(0..units)] += 1;
        }
        let weight = |row: usize| draws[unit_of[row]] as f64;
        let (mut sum, mut defined) = (0.0, 0usize);
        for (label, (scores, truth)) in columns.iter().enumerate() {
            if let Some(auc) = weighted_auroc(scores, truth, &orders[label], weight) {
                samples[label].push(auc);
                sum += auc;
                defined += 1;
            }
        }
        if defined > 0 {
            means.push(sum / defined as f64);
        }
    }
    Intervals {
        per_label: samples.iter_mut().map(|s| percentile_interval(s)).collect(),
        mean: percentile_interval(&mut means),
    }
}

/// AUROC with a weight per image (ties count one half), from the images in ascending score
/// order; `None` without weighted positives or negatives.
fn weighted_auroc(scores: &[f32], truth: &[bool], ascending: &[usize], weight: impl Fn(usize) -> f64) -> Option<f64> {
    let (mut negatives_below, mut area, mut positives) = (0.0, 0.0, 0.0);
    let mut start = 0;
    while start < ascending.len() {
        // One group of equal scores at a time.
        let score = scores[ascending[start]];
        let mut end = start;
        let (mut group_pos, mut group_neg) = (0.0, 0.0);
        while end < ascending.len() && scores[ascending[end]] == score {
            let row = ascending[end];
            if truth[row] {
                group_pos += weight(row);
            } else {
                group_neg += weight(row);
            }
            end += 1;
        }
        area += group_pos * (negatives_below + 0.5 * group_neg);
        negatives_below += group_neg;
        positives += group_pos;
        start = end;
    }
    (positives > 0.0 && negatives_below > 0.0).then(|| area / (positives * negatives_below))
}

/// The central `LEVEL` interval of the samples; `None` when fewer than half the resamples gave
/// a value (the interval would describe a different population).
fn percentile_interval(samples: &mut [f64]) -> Option<[f64; 2]> {
    if samples.len() < RESAMPLES / 2 {
        return None;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| {
        let position = q * (samples.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        samples[low] + (samples[high] - samples[low]) * (position - low as f64)
    };
    let tail = (1.0 - LEVEL) / 2.0;
    Some([at(tail), at(1.0 - tail)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("L{i}")).collect()
    }

    /// `rows` images of two labels: label 0 is informative (scores shifted up for positives),
    /// label 1 noise; patient `i / per_patient`.
    fn synthetic(rows: usize, per_patient: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<String>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut probs, mut targets, mut patients) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..rows {
            let a = rng.random_bool(0.3);
            let b = rng.random_bool(0.5);
            probs.push((rng.random::<f32>() * 0.7 + if a { 0.3 } else { 0.0 }).min(1.0));
            probs.push(rng.random::<f32>());
            targets.extend([a as u8 as f32, b as u8 as f32]);
            patients.push(format!("p{}", i / per_patient));
        }
        (probs, targets, patients)
    }

    #[test]
    fn weighted_auroc_with_unit_weights_is_the_plain_auroc() {
        let scores: [f32; 7] = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2];
        let truth = [false, false, true, true, true, false, false];
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let weighted = weighted_auroc(&scores, &truth, &order, |_| 1.0).unwrap();
        let plain = metrics::roc_auc(&scores, &truth).unwrap();
        assert!((weighted - plain).abs() < 1e-12, "{weighted} vs {plain}");
        // Weight 2 on one image equals that image listed twice.
        let doubled_scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2, 0.35];
        let doubled_truth = [false, false, true, true, true, false, false, true];
        let twice = weighted_auroc(&scores, &truth, &order, |row| if row == 2 { 2.0 } else { 1.0 }).unwrap();
        let expected = metrics::roc_auc(&doubled_scores, &doubled_truth).unwrap();
        assert!((twice - expected).abs() < 1e-12, "{twice} vs {expected}");
    }

    #[test]
    fn intervals_contain_the_estimate_and_narrow_as_the_test_set_grows() {
        let names = labels(2);
        let thresholds = [0.5, 0.5];
        let width = |report: &TestReport| {
            let [lo, hi] = report.labels["L0"].auroc_ci.unwrap();
            hi - lo
        };
        let mut previous = f64::INFINITY;
        for rows in [200, 800, 3200] {
            let (probs, targets, patients) = synthetic(rows, 2, 7);
            let report = score(&names, Task::MultiLabel, &probs, &targets, &thresholds, &patients, 42);
            for (name, label) in &report.labels {
                let auroc = label.auroc.unwrap();
                let [lo, hi] = label.auroc_ci.unwrap();
                assert!(
                    lo <= auroc && auroc <= hi,
                    "{name}: {auroc} outside [{lo}, {hi}] at {rows}"
                );
            }
            let mean = report.mean_auroc.unwrap();
            let [lo, hi] = report.mean_auroc_ci.unwrap();
            assert!(lo <= mean && mean <= hi, "mean {mean} outside [{lo}, {hi}]");
            assert!(
                width(&report) < previous,
                "{rows} images: width {} not below {previous}",
                width(&report)
            );
            previous = width(&report);
            let bootstrap = report.bootstrap.as_ref().unwrap();
            assert_eq!((bootstrap.unit.as_str(), bootstrap.units), ("patient", rows / 2));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_intervals_and_grouping_changes_only_the_intervals() {
        let names = labels(2);
        let (probs, targets, _) = synthetic(600, 1, 3);
        // The same images, first as 600 patients, then as 60 patients of 10 (correlated draws).
        let singles: Vec<String> = (0..600).map(|i| format!("p{i}")).collect();
        let grouped: Vec<String> = (0..600).map(|i| format!("p{}", i / 10)).collect();
        let a = score(&names, Task::MultiLabel, &probs, &targets, &[0.5, 0.5], &singles, 9);
        let b = score(&names, Task::MultiLabel, &probs, &targets, &[0.5, 0.5], &singles, 9);
        assert_eq!(a, b);
        let by_image = score(&names, Task::MultiLabel, &probs, &targets, &[0.5, 0.5], &[], 9);
        assert_eq!(by_image.bootstrap.as_ref().unwrap().unit, "image");
        let grouped = score(&names, Task::MultiLabel, &probs, &targets, &[0.5, 0.5], &grouped, 9);
        let spread = |r: &TestReport| {
            let [lo, hi] = r.labels["L0"].auroc_ci.unwrap();
            hi - lo
        };
        assert!(spread(&grouped) > 0.0 && spread(&a) > 0.0);
        assert_ne!(
            grouped.labels["L0"].auroc_ci, a.labels["L0"].auroc_ci,
            "patients are the resampled units"
        );
        assert_eq!(grouped.bootstrap.as_ref().unwrap().units, 60);
        assert_eq!(
            a.labels["L0"].auroc, grouped.labels["L0"].auroc,
            "the estimate does not depend on grouping"
        );
    }

    #[test]
    fn thresholds_are_applied_not_tuned() {
        let names = labels(1);
        let probs = [0.1, 0.2, 0.6, 0.7, 0.8, 0.3];
        let targets = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        let report = score(&names, Task::MultiLabel, &probs, &targets, &[0.65], &[], 1);
        let label = &report.labels["L0"];
        assert_eq!(label.threshold, 0.65);
        // At 0.65: TP = 1 (0.7), FN = 2 (0.6, 0.3), FP = 1 (0.8), TN = 2.
        assert_eq!(label.sensitivity, Some(1.0 / 3.0));
        assert_eq!(label.specificity, Some(2.0 / 3.0));
        assert_eq!(label.f1, Some(2.0 / (2.0 + 1.0 + 2.0)));
        assert_eq!(label.support, 3);
        assert_eq!(report.exact_match, Some(3.0 / 6.0));
    }

    #[test]
    fn curves_run_from_the_corner_to_the_corner_and_carry_the_areas() {
        let names = labels(2);
        let (probs, targets, _) = synthetic(500, 1, 11);
        let all = curves(&names, &probs, &targets);
        let curve = &all["L0"];
        assert_eq!(curve.roc.first(), Some(&[0.0, 0.0]));
        assert_eq!(curve.roc.last(), Some(&[1.0, 1.0]));
        assert!(curve.roc.len() <= CURVE_POINTS && curve.pr.len() <= CURVE_POINTS);
        assert!(
            curve.roc.windows(2).all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]),
            "monotone"
        );
        assert_eq!(curve.pr.last().unwrap()[0], 1.0, "recall reaches 1");
        let scores: Vec<f32> = probs.iter().step_by(2).copied().collect();
        let truth: Vec<bool> = targets.iter().step_by(2).map(|&t| t >= 0.5).collect();
        assert_eq!(curve.auroc, metrics::roc_auc(&scores, &truth));
        // A label with one class has no curve.
        let one_class = curves(&labels(1), &[0.2, 0.9], &[0.0, 0.0]);
        assert!(one_class.is_empty());
    }

    #[test]
    fn classes_are_grouped_by_training_images_into_many_medium_and_few_shot() {
        let names = labels(4);
        // Recalls: class 0 1.0, class 1 0.5, class 2 0.0, class 3 absent from test.
        let confusion = vec![vec![4, 0, 0, 0], vec![1, 1, 0, 0], vec![0, 2, 0, 0], vec![0, 0, 0, 0]];
        let groups = shot_groups(&names, &confusion, &[500, 101, 20, 19]);
        let by = |g: &str| groups.iter().find(|x| x.group == g).unwrap().clone();
        assert_eq!(by("many").classes, ["L0", "L1"], "101 training images is many-shot");
        assert_eq!(by("many").accuracy, Some(0.75));
        assert_eq!(by("medium").classes, ["L2"], "20 is medium-shot");
        assert_eq!(by("medium").accuracy, Some(0.0));
        assert_eq!(by("few").classes, ["L3"]);
        assert_eq!(by("few").accuracy, None, "no test images of the group");
    }

    #[test]
    fn an_empty_test_split_says_so() {
        let report = score(&labels(2), Task::MultiLabel, &[], &[], &[0.5, 0.5], &[], 1);
        assert_eq!(report.images, 0);
        assert!(report.mean_auroc.is_none() && report.labels.is_empty());
        assert!(report.note.as_deref().unwrap().contains("no images"));
    }

    #[test]
    fn single_label_runs_report_accuracy_balanced_accuracy_and_the_matrix() {
        let names = labels(3);
        #[rustfmt::skip]
        let probs = [
            0.8, 0.1, 0.1,
            0.2, 0.7, 0.1,
            0.6, 0.3, 0.1,
            0.1, 0.1, 0.8,
        ];
        #[rustfmt::skip]
        let targets = [
            1.0, 0.0, 0.0,
            0.0, 1.0, 0.0,
            0.0, 1.0, 0.0,
            0.0, 0.0, 1.0,
        ];
        let report = score(&names, Task::SingleLabel, &probs, &targets, &[0.5; 3], &[], 1);
        assert_eq!(report.accuracy, Some(0.75));
        // Recalls 1, 1/2, 1.
        assert!((report.balanced_accuracy.unwrap() - 2.5 / 3.0).abs() < 1e-12);
        assert_eq!(report.confusion.as_ref().unwrap()[1], vec![1, 1, 0]);
        assert!(report.exact_match.is_none());
    }
}

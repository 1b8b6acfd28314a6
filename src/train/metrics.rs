//! Evaluation metrics over plain slices: per-label AUROC, average precision, F1 (at 0.5 and at a
//! tuned threshold), the multi-label confusion counts, the three accuracies people confuse, and
//! for single-label data the N×N confusion matrix and balanced accuracy.
//!
//! Inputs are row-major `[rows × labels]` slices: `probs` are model outputs in [0, 1] (sigmoid
//! per label, or softmax over labels), `targets` are 0/1 (a cell is positive when `>= 0.5`).
//!
//! Every definition follows scikit-learn (checked against 1.9.1 in the tests):
//! - AUROC = `roc_auc_score(y, s)`: trapezoids over the ROC points at each *distinct* score, so
//!   tied scores form one diagonal step (the same as the Mann–Whitney U with average ranks).
//! - AP = `average_precision_score(y, s)`: `Σ (R_k − R_{k−1}) · P_k` over distinct scores from the
//!   highest down, step-wise, no interpolation.
//! - A cell is predicted positive when `prob >= threshold` (the thresholds `roc_curve` reports).
//! - F1 = `f1_score(y, s >= t, zero_division=np.nan)`: `2TP / (2TP + FP + FN)`, undefined when the
//!   label has no positives and none are predicted (sklearn's default `zero_division="warn"`
//!   would report 0.0 there).
//! - TP/FP/FN/TN = `multilabel_confusion_matrix(Y, P >= 0.5)`; balanced accuracy =
//!   `balanced_accuracy_score`.
//!
//! "Undefined" is `None` (JSON `null`), never a made-up 0.5: AUROC needs both positives and
//! negatives; AP needs positives (with no negatives it is 1, as in sklearn). Means are over the
//! labels where the metric is defined, and the count of those labels is reported beside them.

use serde::{Deserialize, Serialize};

use crate::data::Task;

/// The conventional cut-off for "predicted positive" when no tuned threshold is given.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// One label's metrics on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    pub label: String,
    /// Images with this label (positives).
    pub support: u64,
    pub auroc: Option<f64>,
    pub ap: Option<f64>,
    /// F1 at [`DEFAULT_THRESHOLD`].
    pub f1: Option<f64>,
    /// F1 at `threshold`.
    pub f1_tuned: Option<f64>,
    /// Tuned on this split (max F1) or given by the caller; see [`Evaluation::thresholds`].
    pub threshold: f32,
    /// Confusion counts at [`DEFAULT_THRESHOLD`].
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
    /// Confusion counts at `threshold`; absent in runs recorded before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<Counts>,
}

/// Where the per-label `threshold`s of an [`Evaluation`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdSource {
    /// Max-F1 thresholds found on this very split (optimistic: use on validation only).
    TunedHere,
    /// Thresholds passed in, e.g. tuned on validation and applied to test.
    Given,
}

/// All metrics of one split, ready to persist and show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub task: Task,
    pub rows: usize,
    pub per_label: Vec<LabelMetrics>,
    /// Mean AUROC over the `auroc_defined` labels with both positives and negatives.
    pub mean_auroc: Option<f64>,
    pub auroc_defined: usize,
    /// Mean AP over the `ap_defined` labels with positives.
    pub map: Option<f64>,
    pub ap_defined: usize,
    /// Mean F1 at 0.5 over the `f1_defined` labels where it is defined.
    pub macro_f1: Option<f64>,
    pub f1_defined: usize,
    /// Mean of `f1_tuned` over the labels where it is defined.
    pub macro_f1_tuned: Option<f64>,
    pub thresholds: ThresholdSource,
    /// Share of all `rows × labels` cells where `prob >= 0.5` agrees with the target
    /// (= `1 − hamming_loss`). Inflated by the many negatives of sparse multi-label data.
    pub accuracy_per_label: Option<f64>,
    /// Share of rows where every label's `prob >= 0.5` agrees with the target (exact match,
    /// sklearn's `accuracy_score` on multi-label indicators).
    pub subset_accuracy: Option<f64>,
    /// Share of rows whose highest output (first one on ties, like `argmax`) is one of the
    /// row's positive labels, over the `top1_rows` rows with at least one positive. For
    /// single-label data this is plain accuracy, `argmax(outputs) == argmax(targets)`. The
    /// naive `argmax == argmax` on multi-hot targets differs: it only credits the *first*
    /// positive and counts rows without positives as label 0; we credit any positive and leave
    /// those rows out.
    pub top1_accuracy: Option<f64>,
    pub top1_rows: usize,
    /// Single-label only: `confusion[true][predicted]` counts (argmax of targets vs outputs),
    /// as `confusion_matrix(y, ŷ, labels=range(N))`.
    pub confusion: Option<Vec<Vec<u64>>>,
    /// Single-label only: mean recall over classes present in the targets.
    pub balanced_accuracy: Option<f64>,
    /// Single-label only: mean one-vs-rest AUROC over classes where it is defined (equals
    /// `roc_auc_score(y, S, multi_class="ovr", average="macro")` when every class occurs).
    pub macro_auroc: Option<f64>,
    /// NaN or infinite outputs seen; they are ranked by IEEE total order, so any count above
    /// zero means the metrics describe a broken model rather than a weak one.
    pub non_finite_outputs: u64,
}

/// Confusion counts of one label at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl Counts {
    /// `2TP / (2TP + FP + FN)`, `None` when that is 0/0 (no positives, none predicted).
    pub fn f1(&self) -> Option<f64> {
        let denominator = 2 * self.tp + self.fp + self.fn_;
        (denominator > 0).then(|| (2 * self.tp) as f64 / denominator as f64)
    }
}

/// Counts at `prob >= threshold` for one label's column.
pub fn counts_at(scores: &[f32], truth: &[bool], threshold: f32) -> Counts {
    assert_eq!(scores.len(), truth.len(), "one truth value per score");
    let mut counts = Counts::default();
    for (&score, &positive) in scores.iter().zip(truth) {
        match (score >= threshold, positive) {
            (true, true) => counts.tp += 1,
            (true, false) => counts.fp += 1,
            (false, true) => counts.fn_ += 1,
            (false, false) => counts.tn += 1,
        }
    }
    counts
}

/// The ranking of one label's column: for each distinct score from the highest down, how many
/// positives and negatives score at least that much. Sorting is the only O(n log n) step;
/// AUROC, AP and the best-F1 threshold are then single passes.
struct Ranking {
    scores: Vec<f32>,
    tp: Vec<u64>,
    fp: Vec<u64>,
}

impl Ranking {
    fn new(scores: &[f32], truth: &[bool]) -> Self {
        assert_eq!(scores.len(), truth.len(), "one truth value per score");
        let mut pairs: Vec<(f32, bool)> = scores.iter().copied().zip(truth.iter().copied()).collect();
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut ranking = Ranking {
            scores: Vec::new(),
            tp: Vec::new(),
            fp: Vec::new(),
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for (i, &(score, positive)) in pairs.iter().enumerate() {
            if positive {
                tp += 1;
            } else {
                fp += 1;
            }
            // Close a group at the last of equal scores (`==`, so 0.0 and -0.0 are one group).
            if pairs.get(i + 1).is_none_or(|next| next.0 != score) {
                ranking.scores.push(score);
                ranking.tp.push(tp);
                ranking.fp.push(fp);
            }
        }
        ranking
    }

    fn positives(&self) -> u64 {
        self.tp.last().copied().unwrap_or(0)
    }

    fn negatives(&self) -> u64 {
        self.fp.last().copied().unwrap_or(0)
    }

    fn auroc(&self) -> Option<f64> {
        let (positives, negatives) = (self.positives(), self.negatives());
        if positives == 0 || negatives == 0 {
            return None;
        }
        // Twice the area in units of one positive × one negative, exact in integers; a tied
        // group adds a trapezoid (diagonal), which is what gives ties half credit.
        let (mut twice_area, mut prev_tp, mut prev_fp) = (0u128, 0u64, 0u64);
        for (&tp, &fp) in self.tp.iter().zip(&self.fp) {
            twice_area += u128::from(fp - prev_fp) * u128::from(tp + prev_tp);
            (prev_tp, prev_fp) = (tp, fp);
        }
        Some(twice_area as f64 / (2.0 * positives as f64 * negatives as f64))
    }

    fn average_precision(&self) -> Option<f64> {
        let positives = self.positives();
        if positives == 0 {
            return None;
        }
        let mut sum = 0.0;
        let mut prev_tp = 0u64;
        for (&tp, &fp) in self.tp.iter().zip(&self.fp) {
            if tp > prev_tp {
                let recall_step = (tp - prev_tp) as f64 / positives as f64;
                sum += recall_step * (tp as f64 / (tp + fp) as f64);
            }
            prev_tp = tp;
        }
        Some(sum)
    }

    /// The distinct score with the highest F1 when used as `prob >= threshold` (the highest
    /// such score on ties), with that F1. `None` without positives: every threshold gives 0.
    fn best_f1(&self) -> Option<(f32, f64)> {
        let positives = self.positives();
        if positives == 0 {
            return None;
        }
        let mut best: Option<(f32, f64)> = None;
        for ((&score, &tp), &fp) in self.scores.iter().zip(&self.tp).zip(&self.fp) {
            let f1 = (2 * tp) as f64 / (tp + positives + fp) as f64;
            if best.is_none_or(|(_, b)| f1 > b) {
                best = Some((score, f1));
            }
        }
        best
    }
}

/// Area under the ROC curve of one label, as `sklearn.metrics.roc_auc_score(truth, scores)`;
/// `None` unless there are both positives and negatives.
pub fn roc_auc(scores: &[f32], truth: &[bool]) -> Option<f64> {
    Ranking::new(scores, truth).auroc()
}

/// Average precision of one label, as `sklearn.metrics.average_precision_score(truth, scores)`;
/// `None` without positives.
pub fn average_precision(scores: &[f32], truth: &[bool]) -> Option<f64> {
    Ranking::new(scores, truth).average_precision()
}

/// The threshold (one of the scores) that maximises F1 for `prob >= threshold`, and that F1.
pub fn best_f1_threshold(scores: &[f32], truth: &[bool]) -> Option<(f32, f64)> {
    Ranking::new(scores, truth).best_f1()
}

/// Row-major 0/1 targets from per-record label bits (bit `i` = label `i`, as `data::Record`).
pub fn targets_from_bits(bits: &[u32], labels: usize) -> Vec<f32> {
    let mut targets = vec![0.0; bits.len() * labels];
    for (row, &b) in bits.iter().enumerate() {
        for label in 0..labels {
            if b & (1 << label) != 0 {
                targets[row * labels + label] = 1.0;
            }
        }
    }
    targets
}

/// Checks shapes and returns the row count; mismatches are caller bugs, not user input.
fn rows_of(labels: usize, probs: &[f32], targets: &[f32]) -> usize {
    assert!(labels > 0, "metrics need at least one label");
    assert_eq!(probs.len(), targets.len(), "probs and targets must have the same shape");
    assert_eq!(probs.len() % labels, 0, "probs.len() must be rows × labels");
    probs.len() / labels
}

/// One label's column of a row-major `rows × labels` matrix.
pub(crate) fn column(matrix: &[f32], labels: usize, label: usize) -> impl Iterator<Item = f32> + '_ {
    matrix.iter().skip(label).step_by(labels).copied()
}

/// One label's targets as booleans (a target of 0.5 or more is positive).
pub(crate) fn truth_column(targets: &[f32], labels: usize, label: usize) -> Vec<bool> {
    column(targets, labels, label).map(|t| t >= 0.5).collect()
}

/// Max-F1 threshold per label on this split (usually validation), to apply to other splits
/// via [`evaluate`]. Labels without positives keep [`DEFAULT_THRESHOLD`].
///
/// # Panics
/// If `probs` and `targets` are not both `rows × labels`.
pub fn tune_thresholds(labels: usize, probs: &[f32], targets: &[f32]) -> Vec<f32> {
    rows_of(labels, probs, targets);
    (0..labels)
        .map(|label| {
            let scores: Vec<f32> = column(probs, labels, label).collect();
            best_f1_threshold(&scores, &truth_column(targets, labels, label))
                .map_or(DEFAULT_THRESHOLD, |(threshold, _)| threshold)
        })
        .collect()
}

/// Index of the first largest value, like `argmax`; NaNs never win.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

fn mean_of(values: impl Iterator<Item = Option<f64>>) -> (Option<f64>, usize) {
    let (sum, count) = values.flatten().fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    ((count > 0).then(|| sum / count as f64), count)
}

fn ratio(hits: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Counts behind the accuracies of [`evaluate`], which also sum over batches: the training loop
/// adds them up per step window for its step points without keeping the outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowHits {
    /// `rows × labels` cells where `prob >= 0.5` agrees with the target.
    pub cells_right: usize,
    /// Rows with every label right at 0.5 (exact match).
    pub rows_exact: usize,
    /// Rows whose highest output is one of their positive labels, of the `top1_rows` rows with
    /// at least one positive.
    pub top1_hits: usize,
    pub top1_rows: usize,
}

impl std::ops::AddAssign for RowHits {
    fn add_assign(&mut self, other: RowHits) {
        self.cells_right += other.cells_right;
        self.rows_exact += other.rows_exact;
        self.top1_hits += other.top1_hits;
        self.top1_rows += other.top1_rows;
    }
}

/// [`RowHits`] of row-major `[rows, width]` outputs and targets.
pub fn row_hits(width: usize, probs: &[f32], targets: &[f32]) -> RowHits {
    let mut hits = RowHits::default();
    for (output, target) in probs.chunks_exact(width).zip(targets.chunks_exact(width)) {
        let right = output
            .iter()
            .zip(target)
            .filter(|(&p, &t)| (p >= DEFAULT_THRESHOLD) == (t >= 0.5))
            .count();
        hits.cells_right += right;
        hits.rows_exact += usize::from(right == width);
        if target.iter().any(|&t| t >= 0.5) {
            hits.top1_rows += 1;
            hits.top1_hits += usize::from(target[argmax(output)] >= 0.5);
        }
    }
    hits
}

/// Every metric of one split. `thresholds`: `None` tunes max-F1 thresholds on this split (for
/// validation); `Some` applies given ones (e.g. validation's, on train or test).
///
/// # Panics
/// If `probs` and `targets` are not both `rows × labels.len()`, or `thresholds` has another
/// length than `labels`.
pub fn evaluate(
    labels: &[String],
    task: Task,
    probs: &[f32],
    targets: &[f32],
    thresholds: Option<&[f32]>,
) -> Evaluation {
    let width = labels.len();
    let rows = rows_of(width, probs, targets);
    if let Some(given) = thresholds {
        assert_eq!(given.len(), width, "one threshold per label");
    }

    let per_label: Vec<LabelMetrics> = labels
        .iter()
        .enumerate()
        .map(|(label, name)| {
            let scores: Vec<f32> = column(probs, width, label).collect();
            let truth = truth_column(targets, width, label);
            let ranking = Ranking::new(&scores, &truth);
            let at_default = counts_at(&scores, &truth, DEFAULT_THRESHOLD);
            let best = thresholds.is_none().then(|| ranking.best_f1()).flatten();
            let threshold = match (thresholds, best) {
                (Some(given), _) => given[label],
                (None, Some((threshold, _))) => threshold,
                (None, None) => DEFAULT_THRESHOLD,
            };
            // The counts behind the tuned F1 (the multi-label confusion grid draws them).
            let tuned = counts_at(&scores, &truth, threshold);
            let f1_tuned = best.map(|(_, f1)| f1).or_else(|| tuned.f1());
            LabelMetrics {
                label: name.clone(),
                support: ranking.positives(),
                auroc: ranking.auroc(),
                ap: ranking.average_precision(),
                f1: at_default.f1(),
                f1_tuned,
                threshold,
                tp: at_default.tp,
                fp: at_default.fp,
                fn_: at_default.fn_,
                tn: at_default.tn,
                tuned: Some(tuned),
            }
        })
        .collect();

    let (mean_auroc, auroc_defined) = mean_of(per_label.iter().map(|m| m.auroc));
    let (map, ap_defined) = mean_of(per_label.iter().map(|m| m.ap));
    let (macro_f1, f1_defined) = mean_of(per_label.iter().map(|m| m.f1));
    let (macro_f1_tuned, _) = mean_of(per_label.iter().map(|m| m.f1_tuned));

    let RowHits {
        cells_right,
        rows_exact,
        top1_hits,
        top1_rows,
    } = row_hits(width, probs, targets);

    let (confusion, balanced_accuracy, macro_auroc) = match task {
        Task::MultiLabel => (None, None, None),
        Task::SingleLabel => {
            let confusion = confusion_matrix(width, probs, targets);
            let (balanced, _) = mean_of(confusion.iter().enumerate().map(|(class, row)| {
                let support: u64 = row.iter().sum();
                (support > 0).then(|| row[class] as f64 / support as f64)
            }));
            (Some(confusion), balanced, mean_auroc)
        }
    };

    Evaluation {
        task,
        rows,
        per_label,
        mean_auroc,
        auroc_defined,
        map,
        ap_defined,
        macro_f1,
        f1_defined,
        macro_f1_tuned,
        thresholds: if thresholds.is_some() {
            ThresholdSource::Given
        } else {
            ThresholdSource::TunedHere
        },
        accuracy_per_label: ratio(cells_right, rows * width),
        subset_accuracy: ratio(rows_exact, rows),
        top1_accuracy: ratio(top1_hits, top1_rows),
        top1_rows,
        confusion,
        balanced_accuracy,
        macro_auroc,
        non_finite_outputs: probs.iter().filter(|p| !p.is_finite()).count() as u64,
    }
}

/// Single-label confusion matrix `[true][predicted]`: the true class is a row's first positive
/// target, the prediction its largest output. Rows with no positive target are left out.
///
/// # Panics
/// If `probs` and `targets` are not both `rows × labels`.
pub fn confusion_matrix(labels: usize, probs: &[f32], targets: &[f32]) -> Vec<Vec<u64>> {
    rows_of(labels, probs, targets);
    let mut matrix = vec![vec![0u64; labels]; labels];
    for (output, target) in probs.chunks_exact(labels).zip(targets.chunks_exact(labels)) {
        if let Some(truth) = target.iter().position(|&t| t >= 0.5) {
            matrix[truth][argmax(output)] += 1;
        }
    }
    matrix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(values: &[u8]) -> Vec<bool> {
        values.iter().map(|&v| v == 1).collect()
    }

    fn close(actual: Option<f64>, expected: f64, message: &str) {
        let actual = actual.unwrap_or_else(|| panic!("{message}: undefined, expected {expected}"));
        assert!((actual - expected).abs() < 1e-12, "{message}: {actual} != {expected}");
    }

    #[test]
    fn auroc_by_hand() {
        // (scores, truth, expected AUROC, why)
        let cases: [(&[f32], &[u8], f64, &str); 5] = [
            (&[0.9, 0.8, 0.2, 0.1], &[1, 1, 0, 0], 1.0, "perfect ranking"),
            (&[0.1, 0.2, 0.8, 0.9], &[1, 1, 0, 0], 0.0, "inverted ranking"),
            (&[0.5, 0.5, 0.5, 0.5], &[1, 0, 1, 0], 0.5, "all tied: one diagonal step"),
            // Pairs (pos, neg): (0.8,0.7) win, (0.8,0.4) win, (0.4,0.7) loss, (0.4,0.4) tie.
            (&[0.8, 0.7, 0.4, 0.4], &[1, 0, 1, 0], 2.5 / 4.0, "a tie scores half"),
            (&[0.3, 0.9, 0.6], &[0, 1, 0], 1.0, "order of rows does not matter"),
        ];
        for (scores, truth, expected, message) in cases {
            close(roc_auc(scores, &bools(truth)), expected, message);
        }
    }

    #[test]
    fn average_precision_by_hand() {
        let cases: [(&[f32], &[u8], f64, &str); 4] = [
            (&[0.9, 0.8, 0.2, 0.1], &[1, 1, 0, 0], 1.0, "perfect ranking"),
            // Ranks: pos (P=1, R=.5), neg, pos (P=2/3, R=1): .5·1 + .5·2/3.
            (
                &[0.9, 0.8, 0.7],
                &[1, 0, 1],
                0.5 + 1.0 / 3.0,
                "step-wise, no interpolation",
            ),
            // One tied group of 4 with 2 positives: P=.5 at R=1.
            (&[0.5, 0.5, 0.5, 0.5], &[1, 0, 1, 0], 0.5, "ties are one step"),
            (&[0.2, 0.7], &[1, 1], 1.0, "no negatives: precision is always 1"),
        ];
        for (scores, truth, expected, message) in cases {
            close(average_precision(scores, &bools(truth)), expected, message);
        }
    }

    #[test]
    fn undefined_is_none_not_a_guess() {
        let scores = [0.1, 0.9, 0.4];
        assert_eq!(roc_auc(&scores, &bools(&[0, 0, 0])), None, "AUROC without positives");
        assert_eq!(roc_auc(&scores, &bools(&[1, 1, 1])), None, "AUROC without negatives");
        assert_eq!(
            average_precision(&scores, &bools(&[0, 0, 0])),
            None,
            "AP without positives"
        );
        assert_eq!(roc_auc(&[], &[]), None, "AUROC of nothing");
        assert_eq!(
            best_f1_threshold(&scores, &bools(&[0, 0, 0])),
            None,
            "best F1 without positives"
        );
        let nothing = Counts {
            tn: 3,
            ..Counts::default()
        };
        assert_eq!(
            nothing.f1(),
            None,
            "F1 with no positives and none predicted (zero_division=nan)"
        );
        let false_alarm = Counts {
            fp: 1,
            tn: 2,
            ..Counts::default()
        };
        assert_eq!(false_alarm.f1(), Some(0.0), "F1 with only false positives is a real 0");
    }

    #[test]
    fn f1_and_counts_at_thresholds() {
        let scores = [0.9, 0.6, 0.5, 0.4, 0.2];
        let truth = bools(&[1, 0, 1, 1, 0]);
        let counts = counts_at(&scores, &truth, 0.5);
        assert_eq!(
            counts,
            Counts {
                tp: 2,
                fp: 1,
                fn_: 1,
                tn: 1
            },
            "0.5 itself predicts positive"
        );
        close(counts.f1(), 4.0 / 6.0, "F1 = 2TP/(2TP+FP+FN)");
        // F1 at each score: 0.9 → 1/2, 0.6 → 2/5, 0.5 → 2/3, 0.4 → 6/7, 0.2 → 3/4.
        let (threshold, f1) = best_f1_threshold(&scores, &truth).unwrap();
        assert_eq!(threshold, 0.4, "best threshold is one of the scores");
        close(Some(f1), 6.0 / 7.0, "best F1");
        close(
            counts_at(&scores, &truth, threshold).f1(),
            f1,
            "the threshold reproduces its F1",
        );
    }

    #[test]
    fn best_f1_prefers_the_highest_threshold_on_ties() {
        // At 0.8: TP1 FP0 FN1 → 2/3; at 0.3: TP2 FP2 FN0 → 4/6 = 2/3 as well.
        let scores = [0.8, 0.5, 0.4, 0.3];
        let truth = bools(&[1, 0, 0, 1]);
        assert_eq!(best_f1_threshold(&scores, &truth).unwrap().0, 0.8);
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("L{i}")).collect()
    }

    #[test]
    fn three_accuracies_differ_and_are_named() {
        // 3 rows × 3 labels.
        let probs = [
            0.9, 0.6, 0.1, // predicts {0,1}; truth {0}: top-1 hit, 1 wrong cell
            0.2, 0.3, 0.7, // predicts {2}; truth {2}: exact
            0.4, 0.1, 0.3, // predicts {}; truth {}: exact; no positive → not in top-1
        ];
        let targets = [1., 0., 0., 0., 0., 1., 0., 0., 0.];
        let e = evaluate(&names(3), Task::MultiLabel, &probs, &targets, None);
        close(e.accuracy_per_label, 8.0 / 9.0, "per-label accuracy counts cells");
        close(e.subset_accuracy, 2.0 / 3.0, "subset accuracy counts whole rows");
        close(e.top1_accuracy, 1.0, "top-1 over rows with a positive");
        assert_eq!(e.top1_rows, 2);
        assert_eq!(e.confusion, None, "no N×N confusion for multi-label data");
    }

    #[test]
    fn top1_credits_any_positive() {
        let probs = [0.1, 0.8, 0.3];
        let targets = [1., 1., 0.];
        let e = evaluate(&names(3), Task::MultiLabel, &probs, &targets, None);
        close(
            e.top1_accuracy,
            1.0,
            "argmax 1 is a positive even though argmax(targets) is 0",
        );
    }

    #[test]
    fn undefined_labels_leave_the_means() {
        // Label 1 has no positives: AUROC and AP undefined, means over label 0 only.
        let probs = [0.9, 0.2, 0.1, 0.7, 0.6, 0.4];
        let targets = [1., 0., 0., 0., 1., 0.];
        let e = evaluate(&names(2), Task::MultiLabel, &probs, &targets, None);
        assert_eq!(e.per_label[1].auroc, None);
        assert_eq!(e.per_label[1].ap, None);
        assert_eq!(e.per_label[1].support, 0);
        assert_eq!(e.per_label[1].threshold, DEFAULT_THRESHOLD, "nothing to tune");
        assert_eq!((e.auroc_defined, e.ap_defined), (1, 1));
        assert_eq!(e.mean_auroc, e.per_label[0].auroc, "mean over defined labels only");
        let json = serde_json::to_value(&e).unwrap();
        assert!(
            json["per_label"][1]["auroc"].is_null(),
            "undefined is JSON null: {json}"
        );
        assert_eq!(json["per_label"][0]["fn"], 0, "'fn' spelled as in the JSON output");
    }

    #[test]
    fn given_thresholds_are_applied_not_retuned() {
        let probs = [0.9, 0.6, 0.3, 0.2];
        let targets = [1., 1., 0., 0.];
        let tuned = tune_thresholds(1, &probs, &targets);
        assert_eq!(tuned, [0.6], "lowest score that keeps every positive and no negative");
        let e = evaluate(&names(1), Task::MultiLabel, &probs, &targets, Some(&[0.95]));
        assert_eq!(e.thresholds, ThresholdSource::Given);
        assert_eq!(e.per_label[0].threshold, 0.95);
        close(e.per_label[0].f1_tuned, 0.0, "nothing predicted at 0.95: F1 0");
        close(e.per_label[0].f1, 1.0, "F1 at 0.5 is unaffected");
    }

    #[test]
    fn counts_are_kept_at_the_tuned_threshold_too() {
        // One label, 6 rows: scores and truth as in `f1_and_counts_at_thresholds` plus a low one.
        let probs = [0.9, 0.6, 0.5, 0.4, 0.2, 0.1];
        let targets = [1., 0., 1., 1., 0., 0.];
        let e = evaluate(&names(1), Task::MultiLabel, &probs, &targets, None);
        let label = &e.per_label[0];
        assert_eq!(label.threshold, 0.4, "max-F1 threshold");
        let tuned = label.tuned.expect("tuned counts are recorded");
        assert_eq!(
            tuned,
            Counts {
                tp: 3,
                fp: 1,
                fn_: 0,
                tn: 2
            },
            "at 0.4: every positive found, 0.6 a false alarm"
        );
        close(tuned.f1(), label.f1_tuned.unwrap(), "the counts give the tuned F1");
        assert_ne!(
            (label.tp, label.fn_),
            (tuned.tp, tuned.fn_),
            "0.5 counts are another cut"
        );
        // Given thresholds: the counts are taken at them.
        let given = evaluate(&names(1), Task::MultiLabel, &probs, &targets, Some(&[0.95]));
        assert_eq!(given.per_label[0].tuned.unwrap().tp, 0);
        // Rows stored before the field existed still read.
        let mut old = serde_json::to_value(label).unwrap();
        old.as_object_mut().unwrap().remove("tuned");
        let back: LabelMetrics = serde_json::from_value(old).unwrap();
        assert_eq!(back.tuned, None);
    }

    #[test]
    fn single_label_confusion_and_balanced_accuracy() {
        // 3 classes; truth 0,0,0,1,1,2; predicted 0,0,1,1,0,2.
        let probs = [
            0.7, 0.2, 0.1, 0.6, 0.3, 0.1, 0.3, 0.5, 0.2, 0.1, 0.8, 0.1, 0.5, 0.4, 0.1, 0.2, 0.2, 0.6,
        ];
        let targets = [1., 0., 0., 1., 0., 0., 1., 0., 0., 0., 1., 0., 0., 1., 0., 0., 0., 1.];
        let e = evaluate(&names(3), Task::SingleLabel, &probs, &targets, None);
        assert_eq!(e.confusion, Some(vec![vec![2, 1, 0], vec![1, 1, 0], vec![0, 0, 1]]));
        close(
            e.balanced_accuracy,
            (2.0 / 3.0 + 0.5 + 1.0) / 3.0,
            "mean per-class recall",
        );
        close(e.top1_accuracy, 4.0 / 6.0, "top-1 is plain accuracy here");
        assert_eq!(e.macro_auroc, e.mean_auroc);
    }

    #[test]
    fn balanced_accuracy_skips_classes_absent_from_truth() {
        // Class 2 is predicted once but never true: sklearn drops it from the mean.
        let probs = [0.9, 0.05, 0.05, 0.1, 0.2, 0.7, 0.2, 0.7, 0.1];
        let targets = [1., 0., 0., 1., 0., 0., 0., 1., 0.];
        let e = evaluate(&names(3), Task::SingleLabel, &probs, &targets, None);
        close(e.balanced_accuracy, (0.5 + 1.0) / 2.0, "classes 0 and 1 only");
    }

    /// 12 rows × 4 labels on a 0.1 grid, so most scores tie. Label 2 has no positives, label 3
    /// no negatives.
    const TIED_PROBS: [f32; 48] = [
        0.9, 0.5, 0.2, 0.7, 0.8, 0.5, 0.1, 0.6, 0.8, 0.3, 0.4, 0.6, 0.7, 0.5, 0.3, 0.9, //
        0.5, 0.2, 0.5, 0.5, 0.5, 0.5, 0.2, 0.4, 0.5, 0.1, 0.6, 0.5, 0.4, 0.3, 0.1, 0.8, //
        0.3, 0.3, 0.2, 0.2, 0.3, 0.7, 0.3, 0.5, 0.2, 0.1, 0.1, 0.3, 0.1, 0.5, 0.2, 0.6, //
    ];
    const TIED_TARGETS: [f32; 48] = [
        1., 1., 0., 1., 1., 0., 0., 1., 0., 1., 0., 1., 1., 0., 0., 1., //
        0., 1., 0., 1., 1., 0., 0., 1., 0., 0., 0., 1., 1., 1., 0., 1., //
        0., 0., 0., 1., 1., 1., 0., 1., 0., 0., 0., 1., 0., 1., 0., 1., //
    ];

    #[test]
    fn matches_sklearn_with_ties() {
        // Expected values from scikit-learn 1.9.1 (numpy 2.4.6), P = TIED_PROBS as float32
        // (12, 4), Y = TIED_TARGETS, pred = P >= 0.5:
        //   roc_auc_score(Y[:, j], P[:, j]), average_precision_score(Y[:, j], P[:, j]),
        //   f1_score(Y[:, j], pred[:, j], zero_division=np.nan),
        //   multilabel_confusion_matrix(Y, pred)[j].ravel() (= tn, fp, fn, tp),
        //   best F1 over precision_recall_curve(Y[:, j], P[:, j]) thresholds,
        //   1 - hamming_loss(Y, pred), accuracy_score(Y, pred).
        let e = evaluate(&names(4), Task::MultiLabel, &TIED_PROBS, &TIED_TARGETS, None);
        let label = |j: usize| &e.per_label[j];
        close(label(0).auroc, 0.7222222222222222, "roc_auc_score label 0");
        close(label(1).auroc, 0.6111111111111112, "roc_auc_score label 1");
        assert_eq!(label(2).auroc, None, "label 2 has no positives");
        assert_eq!(label(3).auroc, None, "label 3 has no negatives");
        close(label(0).ap, 0.7021825396825397, "average_precision_score label 0");
        close(label(1).ap, 0.6185185185185186, "average_precision_score label 1");
        assert_eq!(label(2).ap, None, "AP without positives");
        close(label(3).ap, 1.0, "AP without negatives, as sklearn");
        close(label(0).f1, 0.6153846153846154, "f1_score label 0");
        close(label(1).f1, 0.5, "f1_score label 1");
        close(label(2).f1, 0.0, "f1_score label 2: two false alarms");
        close(label(3).f1, 0.8571428571428571, "f1_score label 3");
        let counts: Vec<[u64; 4]> = e.per_label.iter().map(|m| [m.tn, m.fp, m.fn_, m.tp]).collect();
        assert_eq!(
            counts,
            [[3, 3, 2, 4], [3, 3, 3, 3], [10, 2, 0, 0], [0, 0, 3, 9]],
            "multilabel_confusion_matrix"
        );
        let supports: Vec<u64> = e.per_label.iter().map(|m| m.support).collect();
        assert_eq!(supports, [6, 6, 0, 12]);
        for (j, threshold, f1) in [(0, 0.3, 0.75), (1, 0.2, 0.75), (3, 0.2, 1.0)] {
            assert_eq!(label(j).threshold, threshold, "max-F1 threshold label {j}");
            assert!((label(j).f1_tuned.unwrap() - f1).abs() < 1e-12, "max F1 label {j}");
        }
        close(
            e.mean_auroc,
            (0.7222222222222222 + 0.6111111111111112) / 2.0,
            "mean over 2 labels",
        );
        assert_eq!((e.auroc_defined, e.ap_defined), (2, 3));
        close(
            e.map,
            (0.7021825396825397 + 0.6185185185185186 + 1.0) / 3.0,
            "mAP over 3 labels",
        );
        close(e.accuracy_per_label, 0.6666666666666667, "1 - hamming_loss");
        close(e.subset_accuracy, 0.16666666666666666, "accuracy_score on indicators");
    }

    #[test]
    fn single_label_matches_sklearn() {
        // scikit-learn 1.9.1, S float32 (10, 3), y = [0,0,1,2,1,1,2,0,2,2], ŷ = S.argmax(1):
        //   confusion_matrix(y, ŷ, labels=[0,1,2]), balanced_accuracy_score(y, ŷ),
        //   roc_auc_score(y, S, multi_class="ovr", average="macro"), accuracy_score(y, ŷ).
        // Row 5 ties classes 0 and 1: argmax takes the first.
        let probs = [
            0.6, 0.3, 0.1, 0.5, 0.3, 0.2, 0.2, 0.6, 0.2, 0.3, 0.3, 0.4, 0.1, 0.8, 0.1, //
            0.4, 0.4, 0.2, 0.2, 0.2, 0.6, 0.3, 0.5, 0.2, 0.5, 0.2, 0.3, 0.1, 0.3, 0.6, //
        ];
        let truth = [0usize, 0, 1, 2, 1, 1, 2, 0, 2, 2];
        let mut targets = vec![0.0; 30];
        for (row, &class) in truth.iter().enumerate() {
            targets[row * 3 + class] = 1.0;
        }
        let e = evaluate(&names(3), Task::SingleLabel, &probs, &targets, None);
        assert_eq!(e.confusion, Some(vec![vec![2, 1, 0], vec![1, 2, 0], vec![1, 0, 3]]));
        close(e.balanced_accuracy, 0.6944444444444443, "balanced_accuracy_score");
        close(e.macro_auroc, 0.9365079365079364, "roc_auc_score ovr macro");
        close(e.top1_accuracy, 0.7, "accuracy_score");
        close(e.per_label[1].auroc, 0.9523809523809523, "one-vs-rest class 1");
    }

    #[test]
    fn non_finite_outputs_are_counted() {
        let e = evaluate(&names(1), Task::MultiLabel, &[f32::NAN, 0.2], &[1., 0.], None);
        assert_eq!(e.non_finite_outputs, 1);
    }

    #[test]
    fn targets_from_record_bits() {
        assert_eq!(targets_from_bits(&[0b101, 0], 3), [1., 0., 1., 0., 0., 0.]);
    }
}

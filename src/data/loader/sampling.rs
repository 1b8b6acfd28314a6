//! The order in which an epoch visits a split: as given, shuffled, or drawn class-balanced.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::SliceRandom;
use rand::Rng;

/// Positions into the split for one epoch, exactly `targets.len()` of them.
pub(super) fn epoch_order<R: Rng + ?Sized>(
    targets: &[u32],
    num_labels: usize,
    shuffle: bool,
    balanced: bool,
    rng: &mut R,
) -> Vec<usize> {
    if balanced && !targets.is_empty() {
        let weights = balanced_weights(targets, num_labels);
        // Every row has a positive weight (each label it carries has at least that row as a
        // positive), so the weights are valid whenever the split is not empty.
        let draw = WeightedIndex::new(&weights).expect("balanced weights are positive and finite");
        return (0..targets.len()).map(|_| draw.sample(rng)).collect();
    }
    let mut order: Vec<usize> = (0..targets.len()).collect();
    if shuffle {
        order.shuffle(rng);
    }
    order
}

/// Sampling weight of each row for class-balanced epochs.
///
/// Every class gets the same share of the epoch: each label present in the split, plus one
/// class for "No Finding" rows (mask 0) if there are any. A row's weight is the sum, over the
/// classes it belongs to, of `1 / positives(class)`; so a multi-label row is drawn for each of
/// its labels, and the rows of one label together carry one unit. Labels that co-occur with
/// rarer ones are therefore seen a little more than the others: "about equally", not exactly.
/// With the 14 NIH findings, "No Finding" rows make about 1/15 of a balanced epoch instead of
/// more than half, and each finding's negatives are still plentiful in the other rows.
pub fn balanced_weights(targets: &[u32], num_labels: usize) -> Vec<f64> {
    let mut positives = vec![0usize; num_labels];
    let mut no_finding = 0usize;
    for &mask in targets {
        if mask == 0 {
            no_finding += 1;
        }
        for (label, count) in positives.iter_mut().enumerate() {
            *count += (mask >> label & 1) as usize;
        }
    }
    targets
        .iter()
        .map(|&mask| {
            if mask == 0 {
                return 1.0 / no_finding as f64;
            }
            positives
                .iter()
                .enumerate()
                .filter(|&(label, _)| mask >> label & 1 == 1)
                .map(|(_, &count)| 1.0 / count as f64)
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn weights_give_each_class_one_unit() {
        // Label 0 on 3 rows, label 1 on 1 row (shared with label 0), 2 "No Finding" rows.
        let targets = [0b01, 0b01, 0b11, 0, 0];
        let w = balanced_weights(&targets, 2);
        let expected = [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0 + 1.0, 0.5, 0.5];
        for (got, want) in w.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "weights {w:?}, expected {expected:?}");
        }
        assert!(
            (w.iter().sum::<f64>() - 3.0).abs() < 1e-12,
            "three classes, one unit each"
        );
    }

    #[test]
    fn unbalanced_order_is_a_permutation_and_shuffles() {
        let targets = vec![0u32; 100];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plain = epoch_order(&targets, 1, false, false, &mut rng);
        assert_eq!(plain, (0..100).collect::<Vec<_>>());
        let mut shuffled = epoch_order(&targets, 1, true, false, &mut rng);
        assert_ne!(shuffled, plain, "shuffle left the order unchanged");
        shuffled.sort_unstable();
        assert_eq!(shuffled, plain, "shuffle must visit every item exactly once");
    }

    #[test]
    fn balanced_order_is_empty_for_an_empty_split() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!(epoch_order(&[], 3, true, true, &mut rng).is_empty());
    }
}

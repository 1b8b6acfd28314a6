//! Split statistics the engine needs beside the batches: per-label positive/negative counts
//! (for the loss's `pos_weight`) and the pixel mean/std used for normalisation.

use rayon::prelude::*;

use super::{Error, ImageSource};
use crate::data::augment::Normalization;

/// Rows with and without one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelCount {
    pub positives: usize,
    pub negatives: usize,
}

impl LabelCount {
    /// `negatives / positives`, the usual weight that balances a label's positive and negative
    /// loss terms. A label without positives gets 1: it has no positive term to weigh.
    pub fn pos_weight(&self) -> f32 {
        if self.positives == 0 {
            1.0
        } else {
            self.negatives as f32 / self.positives as f32
        }
    }
}

/// Positives and negatives of each of the `num_labels` labels (bit `l` of a mask = label `l`).
pub fn label_counts(targets: &[u32], num_labels: usize) -> Vec<LabelCount> {
    (0..num_labels)
        .map(|label| {
            let positives = targets.iter().filter(|&&mask| mask >> label & 1 == 1).count();
            LabelCount {
                positives,
                negatives: targets.len() - positives,
            }
        })
        .collect()
}

/// [`LabelCount::pos_weight`] of each label.
pub fn pos_weights(targets: &[u32], num_labels: usize) -> Vec<f32> {
    label_counts(targets, num_labels)
        .iter()
        .map(LabelCount::pos_weight)
        .collect()
}

/// Mean and (population) standard deviation of pixel intensity on the 0..1 scale over the
/// given images, for when the cache does not provide them. Exact: it counts a 256-bin
/// histogram (in parallel) and derives both moments from it.
pub fn pixel_mean_std(source: &dyn ImageSource, items: &[usize]) -> Result<Normalization, Error> {
    let len = source.len();
    if let Some((position, &index)) = items.iter().enumerate().find(|(_, &i)| i >= len) {
        return Err(Error::IndexOutOfRange { position, index, len });
    }
    if items.is_empty() {
        return Err(Error::Config(
            "cannot compute pixel statistics of an empty split".into(),
        ));
    }
    let histogram = items
        .par_iter()
        .fold(
            || [0u64; 256],
            |mut hist, &i| {
                for &p in source.pixels(i) {
                    hist[p as usize] += 1;
                }
                hist
            },
        )
        .reduce(
            || [0u64; 256],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let count: u64 = histogram.iter().sum();
    let mean = histogram
        .iter()
        .enumerate()
        .map(|(v, &c)| v as f64 * c as f64)
        .sum::<f64>()
        / count as f64;
    let variance = histogram
        .iter()
        .enumerate()
        .map(|(v, &c)| (v as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / count as f64;
    Ok(Normalization {
        mean: (mean / 255.0) as f32,
        std: (variance.sqrt() / 255.0) as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::loader::VecSource;

    #[test]
    fn counts_and_pos_weights() {
        let targets = [0b01, 0b11, 0, 0b01];
        let counts = label_counts(&targets, 3);
        assert_eq!(
            counts[0],
            LabelCount {
                positives: 3,
                negatives: 1
            }
        );
        assert_eq!(
            counts[1],
            LabelCount {
                positives: 1,
                negatives: 3
            }
        );
        assert_eq!(
            counts[2],
            LabelCount {
                positives: 0,
                negatives: 4
            }
        );
        assert_eq!(pos_weights(&targets, 3), vec![1.0 / 3.0, 3.0, 1.0]);
    }

    #[test]
    fn mean_std_of_known_images() {
        // Image 0: half 0, half 255; image 1 (left out): all 100; image 2: all 255.
        let mut bytes = vec![0u8, 0, 255, 255];
        bytes.extend([100u8; 4]);
        bytes.extend([255u8; 4]);
        let source = VecSource::new(2, bytes).unwrap();
        let norm = pixel_mean_std(&source, &[0, 2]).unwrap();
        // Pixels 0,0,1,1,1,1,1,1 on the 0..1 scale: mean 0.75, variance 0.1875.
        assert!((norm.mean - 0.75).abs() < 1e-6, "mean {}", norm.mean);
        assert!((norm.std - 0.1875f32.sqrt()).abs() < 1e-6, "std {}", norm.std);
    }

    #[test]
    fn mean_std_rejects_bad_items() {
        let source = VecSource::new(2, vec![0; 4]).unwrap();
        assert!(matches!(
            pixel_mean_std(&source, &[1]),
            Err(Error::IndexOutOfRange { index: 1, .. })
        ));
        assert!(matches!(pixel_mean_std(&source, &[]), Err(Error::Config(_))));
    }
}

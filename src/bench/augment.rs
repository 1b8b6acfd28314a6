//! Micro-benchmark of batch building (augmentation + normalisation) for `cxr8 bench`.

use std::sync::Arc;
use std::time::Instant;

use crate::data::augment::AugmentConfig;
use crate::data::loader::{Loader, LoaderConfig, VecSource};

/// Throughput of one timed epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentBench {
    pub size: usize,
    pub batch_size: usize,
    pub workers: usize,
    pub batches: usize,
    pub seconds: f64,
    pub batches_per_s: f64,
    pub images_per_s: f64,
}

impl std::fmt::Display for AugmentBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "augment {0}×{0}, batch {1}, {2} workers: {3:.1} batches/s, {4:.0} images/s ({5:.1} µs/image/thread)",
            self.size,
            self.batch_size,
            self.workers,
            self.batches_per_s,
            self.images_per_s,
            1e6 * self.workers.max(1) as f64 / self.images_per_s
        )
    }
}

/// Builds `batches` batches of `batch_size` synthetic `size × size` images with the default
/// augmentation (every image warped and jittered) on `workers` threads (0 = the caller's) and
/// times the whole epoch, consumer included.
pub(super) fn bench_augment(size: usize, batch_size: usize, batches: usize, workers: usize) -> AugmentBench {
    // A few distinct textured images, reused: the cost does not depend on content.
    const DISTINCT: usize = 16;
    let bytes: Vec<u8> = (0..DISTINCT * size * size)
        .map(|i| ((i * 31 + (i / size) * 7) % 251) as u8)
        .collect();
    let source = Arc::new(VecSource::new(size, bytes).expect("whole synthetic images"));
    let n = batches * batch_size;
    let items: Vec<usize> = (0..n).map(|i| i % DISTINCT).collect();
    let config = LoaderConfig {
        batch_size,
        shuffle: true,
        augment: AugmentConfig::default(),
        workers,
        prefetch: 2 * workers.max(1),
        ..LoaderConfig::default()
    };
    let loader = Loader::new(source, items, vec![0; n], 14, config).expect("valid benchmark loader");
    let start = Instant::now();
    let mut checksum = 0.0f32;
    for batch in loader.epoch(0) {
        checksum += batch.images[0];
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    AugmentBench {
        size,
        batch_size,
        workers,
        batches,
        seconds,
        batches_per_s: batches as f64 / seconds,
        images_per_s: n as f64 / seconds,
    }
}

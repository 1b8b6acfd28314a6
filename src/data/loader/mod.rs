//! The training data loader: turns a split (source indices + label masks) into batches of
//! normalised, optionally augmented f32 images and multi-hot targets, built ahead of time on
//! worker threads so the device never waits. Pure Rust; the engine makes tensors of the batches.
//!
//! Everything random is seeded from `(seed, epoch)` and, per batch, `(seed, epoch, batch index)`,
//! so an epoch is the same whatever the number of worker threads.

mod sampling;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{render, AugmentConfig, Normalization};

pub use sampling::balanced_weights;
pub use stats::{label_counts, pixel_mean_std, pos_weights, LabelCount};

/// Where the loader reads pixels: `len()` square u8 images of `size × size`, row-major.
/// The lead implements it for the memory-mapped cache; [`VecSource`] holds images in memory.
pub trait ImageSource: Send + Sync {
    /// Side of every image, pixels.
    fn size(&self) -> usize;
    /// Number of images.
    fn len(&self) -> usize;
    /// Image `i` (`i < len()`), exactly `size × size` bytes.
    fn pixels(&self, i: usize) -> &[u8];
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Images held in one in-memory buffer (tests, benchmarks, small synthetic sets).
#[derive(Debug, Clone)]
pub struct VecSource {
    size: usize,
    bytes: Vec<u8>,
}

impl VecSource {
    /// `bytes` holds whole `size × size` images back to back.
    pub fn new(size: usize, bytes: Vec<u8>) -> Result<Self, Error> {
        let image = size * size;
        if size == 0 || !bytes.len().is_multiple_of(image) {
            return Err(Error::Config(format!(
                "an in-memory image source needs whole {size}×{size} images, got {} bytes",
                bytes.len()
            )));
        }
        Ok(VecSource { size, bytes })
    }
}

impl ImageSource for VecSource {
    fn size(&self) -> usize {
        self.size
    }
    fn len(&self) -> usize {
        self.bytes.len() / (self.size * self.size)
    }
    fn pixels(&self, i: usize) -> &[u8] {
        let image = self.size * self.size;
        &self.bytes[i * image..(i + 1) * image]
    }
}

/// What is wrong with a loader's inputs, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{items} items but {targets} label masks: give exactly one label mask per item")]
    LengthMismatch { items: usize, targets: usize },
    #[error(
        "item {position} refers to image {index}, but the image source holds only {len} images: \
         the split and the image cache disagree, rebuild the cache"
    )]
    IndexOutOfRange { position: usize, index: usize, len: usize },
    #[error(
        "item {position} has label mask {mask:#x} with bits beyond the {num_labels} labels: \
         the label masks and the label count disagree"
    )]
    LabelOutOfRange {
        position: usize,
        mask: u32,
        num_labels: usize,
    },
    #[error("image {index} has {got} bytes, expected {expected} ({size}×{size}): the image source is corrupt")]
    ImageSize {
        index: usize,
        got: usize,
        expected: usize,
        size: usize,
    },
    #[error("invalid loader setting: {0}")]
    Config(String),
    #[error("invalid augmentation: {0}")]
    Augment(#[from] super::augment::RangeError),
}

/// How batches are drawn and prepared.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Visit items in a new random order each epoch (else in split order).
    pub shuffle: bool,
    /// Seeds the order, the balanced draws and the augmentation.
    pub seed: u64,
    /// Augmentation; use [`AugmentConfig::disabled`] for evaluation.
    pub augment: AugmentConfig,
    /// Data set mean and standard deviation of pixel intensity on the 0..1 scale.
    pub mean: f32,
    pub std: f32,
    /// Draw items with replacement so each label's positives are seen about equally often
    /// (see [`balanced_weights`]); epoch length stays the split size.
    pub balanced: bool,
    /// Leave out the last, smaller batch.
    pub drop_last: bool,
    /// Threads building batches; 0 builds them on the caller's thread when asked for.
    pub workers: usize,
    /// Finished batches kept ready ahead of the consumer (in total, over all workers).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            augment: AugmentConfig::default(),
            // Neutral placeholders; give the data set's own statistics (cache or pixel_mean_std).
            mean: 0.5,
            std: 0.25,
            balanced: false,
            drop_last: false,
            workers: 2,
            prefetch: 4,
        }
    }
}

impl LoaderConfig {
    /// In order, no augmentation, no balancing, every item: for validation and test splits.
    pub fn eval(batch_size: usize, mean: f32, std: f32) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: AugmentConfig::disabled(),
            mean,
            std,
            ..LoaderConfig::default()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if !self.mean.is_finite() {
            return Err(Error::Config(format!("pixel mean must be a number, got {}", self.mean)));
        }
        if !(self.std.is_finite() && self.std > 0.0) {
            return Err(Error::Config(format!(
                "pixel standard deviation must be positive, got {}: are all images blank?",
                self.std
            )));
        }
        Ok(self.augment.validate()?)
    }
}

/// A batch ready for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[n, 1, size, size]` row-major, normalised.
    pub images: Vec<f32>,
    /// `[n, num_labels]` row-major multi-hot (1.0 where the label is present).
    pub targets: Vec<f32>,
    pub n: usize,
    pub size: usize,
    pub num_labels: usize,
    /// Source index of each image (for per-image predictions and debugging).
    pub indices: Vec<usize>,
}

/// Builds the batches of a split, epoch after epoch. Cheap to share: epochs run independently.
pub struct Loader {
    shared: Arc<Shared>,
}

/// What every worker needs, read-only.
struct Shared {
    source: Arc<dyn ImageSource>,
    items: Vec<usize>,
    targets: Vec<u32>,
    num_labels: usize,
    config: LoaderConfig,
    norm: Normalization,
}

impl Loader {
    /// `items` are source indices of the split's images, `targets[k]` the label bitmask of
    /// `items[k]` (bit `l` set when label `l` is present; 0 = "No Finding").
    pub fn new(
        source: Arc<dyn ImageSource>,
        items: Vec<usize>,
        targets: Vec<u32>,
        num_labels: usize,
        config: LoaderConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        if !(1..=32).contains(&num_labels) {
            return Err(Error::Config(format!(
                "label count must be between 1 and 32 (one bit each), got {num_labels}"
            )));
        }
        if items.len() != targets.len() {
            return Err(Error::LengthMismatch {
                items: items.len(),
                targets: targets.len(),
            });
        }
        let len = source.len();
        if let Some((position, &index)) = items.iter().enumerate().find(|(_, &i)| i >= len) {
            return Err(Error::IndexOutOfRange { position, index, len });
        }
        let allowed = if num_labels == 32 {
            u32::MAX
        } else {
            (1u32 << num_labels) - 1
        };
        if let Some((position, &mask)) = targets.iter().enumerate().find(|(_, &m)| m & !allowed != 0) {
            return Err(Error::LabelOutOfRange {
                position,
                mask,
                num_labels,
            });
        }
        let size = source.size();
        if size == 0 {
            return Err(Error::Config(
                "the image source has images of size 0: rebuild the cache".into(),
            ));
        }
        // Checking one image catches a wrong size without reading the whole cache.
        if let Some(&index) = items.first() {
            let got = source.pixels(index).len();
            if got != size * size {
                return Err(Error::ImageSize {
                    index,
                    got,
                    expected: size * size,
                    size,
                });
            }
        }
        let norm = Normalization {
            mean: config.mean,
            std: config.std,
        };
        Ok(Loader {
            shared: Arc::new(Shared {
                source,
                items,
                targets,
                num_labels,
                config,
                norm,
            }),
        })
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.shared.items.len(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Items in the split (and draws per epoch).
    pub fn num_items(&self) -> usize {
        self.shared.items.len()
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// The epoch's batches, in order. With `workers > 0` they are built ahead on threads;
    /// dropping the iterator early stops and joins them.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let shared = &self.shared;
        let mut order_rng = ChaCha8Rng::seed_from_u64(derive_seed(&[shared.config.seed, epoch, STREAM_ORDER]));
        let order = sampling::epoch_order(
            &shared.targets,
            shared.num_labels,
            shared.config.shuffle,
            shared.config.balanced,
            &mut order_rng,
        );
        let total = self.num_batches();
        let plan = Arc::new(Plan {
            shared: Arc::clone(shared),
            order,
            epoch,
        });
        let workers = shared.config.workers.min(total);
        let inner = if workers == 0 {
            Inner::Inline(plan)
        } else {
            Inner::Threads(Workers::spawn(plan, workers, total, shared.config.prefetch))
        };
        EpochBatches { inner, next: 0, total }
    }
}

/// Stream tags keep the order RNG and the per-batch RNGs independent.
const STREAM_ORDER: u64 = 0x006f_7264_6572;
const STREAM_BATCH: u64 = 0x0062_6174_6368;

/// Mixes the parts into one well-spread seed (splitmix64 finaliser over each part), so
/// neighbouring epochs or batches get unrelated streams.
fn derive_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &part in parts {
        h ^= part;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// One epoch's fixed draw order; any thread can build any batch from it.
struct Plan {
    shared: Arc<Shared>,
    /// Positions into `items`, one per draw.
    order: Vec<usize>,
    epoch: u64,
}

impl Plan {
    fn build(&self, batch: usize) -> Batch {
        let shared = &*self.shared;
        let config = &shared.config;
        let start = batch * config.batch_size;
        let positions = &self.order[start..(start + config.batch_size).min(self.order.len())];
        let size = shared.source.size();
        let pixels = size * size;
        let n = positions.len();
        let mut images = vec![0.0f32; n * pixels];
        let mut targets = vec![0.0f32; n * shared.num_labels];
        let mut indices = Vec::with_capacity(n);
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(&[config.seed, self.epoch, STREAM_BATCH, batch as u64]));
        for (k, &position) in positions.iter().enumerate() {
            let index = shared.items[position];
            let params = config.augment.sample(&mut rng, size);
            let out = &mut images[k * pixels..(k + 1) * pixels];
            render(shared.source.pixels(index), size, &params, &shared.norm, out);
            let mask = shared.targets[position];
            for (label, t) in targets[k * shared.num_labels..(k + 1) * shared.num_labels]
                .iter_mut()
                .enumerate()
            {
                if mask >> label & 1 == 1 {
                    *t = 1.0;
                }
            }
            indices.push(index);
        }
        Batch {
            images,
            targets,
            n,
            size,
            num_labels: shared.num_labels,
            indices,
        }
    }
}

/// The batches of one epoch, in order.
pub struct EpochBatches {
    inner: Inner,
    next: usize,
    total: usize,
}

enum Inner {
    Inline(Arc<Plan>),
    Threads(Workers),
}

/// Worker `w` builds batches `w, w + W, w + 2W, …` into its own bounded channel, and the
/// consumer reads the channels round-robin: output stays in order without a reorder buffer,
/// and at most `prefetch` finished batches (rounded up to a multiple of W) wait in memory.
struct Workers {
    receivers: Vec<Receiver<Batch>>,
    handles: Vec<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

impl Workers {
    fn spawn(plan: Arc<Plan>, workers: usize, total: usize, prefetch: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let capacity = prefetch.div_ceil(workers);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (sender, receiver) = mpsc::sync_channel(capacity);
            let (plan, stop) = (Arc::clone(&plan), Arc::clone(&stop));
            let handle = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    for batch in (w..total).step_by(workers) {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        // A send error means the consumer is gone: stop quietly.
                        if sender.send(plan.build(batch)).is_err() {
                            return;
                        }
                    }
                })
                .expect("cannot start a loader thread: the system is out of threads");
            receivers.push(receiver);
            handles.push(Some(handle));
        }
        Workers {
            receivers,
            handles,
            stop,
        }
    }
}

impl Iterator for EpochBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let batch = self.next;
        self.next += 1;
        match &mut self.inner {
            Inner::Inline(plan) => Some(plan.build(batch)),
            Inner::Threads(workers) => {
                let w = batch % workers.receivers.len();
                match workers.receivers[w].recv() {
                    Ok(b) => Some(b),
                    Err(_) => {
                        // The worker ended before its batches were done: it panicked. Pass the
                        // panic on rather than end the epoch short without saying so.
                        self.next = self.total;
                        if let Some(Err(panic)) = workers.handles[w].take().map(JoinHandle::join) {
                            std::panic::resume_unwind(panic);
                        }
                        None
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches {}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers wakes workers blocked on a full channel with a send error.
        self.receivers.clear();
        for handle in self.handles.iter_mut().filter_map(Option::take) {
            // A worker's panic was already reported, or is moot now that the epoch is abandoned.
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// `n` images of `size × size`; image `i` is filled with the value `i` so a batch's pixels
    /// tell which item they came from.
    fn flat_source(n: usize, size: usize) -> Arc<VecSource> {
        assert!(n <= 256);
        let bytes = (0..n).flat_map(|i| std::iter::repeat_n(i as u8, size * size)).collect();
        Arc::new(VecSource::new(size, bytes).unwrap())
    }

    fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
        loader.epoch(epoch).collect()
    }

    #[test]
    fn batch_shapes_exact_normalisation_and_multi_hot_targets() {
        let size = 4;
        let bytes: Vec<u8> = (0..3 * size * size).map(|i| (i * 5) as u8).collect();
        let source = Arc::new(VecSource::new(size, bytes.clone()).unwrap());
        let config = LoaderConfig {
            workers: 1,
            ..LoaderConfig::eval(2, 0.4, 0.2)
        };
        let loader = Loader::new(source, vec![2, 0, 1], vec![0b101, 0, 0b010], 3, config).unwrap();
        let batches = collect(&loader, 0);
        assert_eq!(batches.len(), 2);
        let (first, last) = (&batches[0], &batches[1]);
        assert_eq!((first.n, first.size, first.num_labels), (2, 4, 3));
        assert_eq!(first.images.len(), 2 * 16);
        assert_eq!(first.targets, vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(first.indices, vec![2, 0]);
        let expected: Vec<f32> = bytes[32..48]
            .iter()
            .chain(&bytes[0..16])
            .map(|&p| (p as f32 / 255.0 - 0.4) / 0.2)
            .collect();
        assert_eq!(
            first.images, expected,
            "normalisation must be exactly (x/255 - mean)/std"
        );
        assert_eq!(
            (last.n, last.indices.clone(), last.targets.clone()),
            (1, vec![1], vec![0.0, 1.0, 0.0])
        );
    }

    #[test]
    fn every_item_exactly_once_per_epoch_without_balancing() {
        let source = flat_source(103, 3);
        let items: Vec<usize> = (0..103).rev().collect();
        let config = LoaderConfig {
            batch_size: 10,
            workers: 3,
            prefetch: 2,
            ..LoaderConfig::default()
        };
        let loader = Loader::new(source.clone(), items.clone(), vec![0; 103], 2, config.clone()).unwrap();
        assert_eq!(loader.num_batches(), 11);
        let batches = collect(&loader, 4);
        assert_eq!(batches.len(), 11);
        assert_eq!(batches[10].n, 3, "the last batch holds the remainder");
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());

        let config = LoaderConfig {
            drop_last: true,
            ..config
        };
        let loader = Loader::new(source, items, vec![0; 103], 2, config).unwrap();
        let batches = collect(&loader, 4);
        assert_eq!(batches.len(), 10);
        assert!(batches.iter().all(|b| b.n == 10));
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100, "drop_last must still draw without repeats");
    }

    #[test]
    fn epochs_are_identical_whatever_the_worker_count() {
        let size = 8;
        let bytes: Vec<u8> = (0..40 * size * size).map(|i| (i * 37 % 256) as u8).collect();
        let source = Arc::new(VecSource::new(size, bytes).unwrap());
        let targets: Vec<u32> = (0..40).map(|i| (i % 5) as u32).collect();
        for balanced in [false, true] {
            let runs: Vec<Vec<Batch>> = [(0, 0), (1, 1), (3, 1), (4, 7)]
                .iter()
                .map(|&(workers, prefetch)| {
                    let config = LoaderConfig {
                        batch_size: 6,
                        seed: 9,
                        balanced,
                        workers,
                        prefetch,
                        ..LoaderConfig::default()
                    };
                    let loader = Loader::new(source.clone(), (0..40).collect(), targets.clone(), 3, config).unwrap();
                    collect(&loader, 2)
                })
                .collect();
            for run in &runs[1..] {
                assert_eq!(run, &runs[0], "balanced={balanced}: batches depend on the worker count");
            }
        }
    }

    #[test]
    fn epochs_and_seeds_give_different_orders_and_augmentations() {
        let size = 8;
        let bytes: Vec<u8> = (0..20 * size * size).map(|i| (i * 37 % 256) as u8).collect();
        let source = Arc::new(VecSource::new(size, bytes).unwrap());
        let make = |seed| {
            let config = LoaderConfig {
                batch_size: 20,
                seed,
                workers: 0,
                ..LoaderConfig::default()
            };
            Loader::new(source.clone(), (0..20).collect(), vec![0; 20], 1, config).unwrap()
        };
        let loader = make(1);
        let (a, b) = (&collect(&loader, 0)[0], &collect(&loader, 1)[0]);
        assert_ne!(a.indices, b.indices, "epochs 0 and 1 visit items in the same order");
        // Same item, different epochs: the augmentation must differ too.
        let k0 = a.indices.iter().position(|&i| i == 5).unwrap();
        let k1 = b.indices.iter().position(|&i| i == 5).unwrap();
        let pixels = size * size;
        assert_ne!(
            a.images[k0 * pixels..(k0 + 1) * pixels],
            b.images[k1 * pixels..(k1 + 1) * pixels]
        );
        assert_ne!(
            collect(&make(2), 0)[0].indices,
            a.indices,
            "seeds 1 and 2 give the same order"
        );
        assert_eq!(&collect(&loader, 0)[0], a, "the same epoch must repeat exactly");
    }

    #[test]
    fn balanced_sampling_evens_out_a_skewed_split() {
        // 800 "No Finding", 150 / 45 / 5 positives of labels 0 / 1 / 2.
        let mut targets = vec![0u32; 800];
        targets.extend([0b001; 150]);
        targets.extend([0b010; 45]);
        targets.extend([0b100; 5]);
        let source = flat_source(1, 2);
        let config = LoaderConfig {
            batch_size: 100,
            balanced: true,
            workers: 0,
            augment: AugmentConfig::disabled(),
            ..LoaderConfig::default()
        };
        let loader = Loader::new(source, vec![0; 1000], targets.clone(), 3, config).unwrap();
        let mut class_draws = [0usize; 4];
        let mut positions = 0;
        for epoch in 0..4 {
            let batches = collect(&loader, epoch);
            assert_eq!(
                batches.iter().map(|b| b.n).sum::<usize>(),
                1000,
                "epoch length must stay the split size"
            );
            for b in &batches {
                for row in b.targets.chunks_exact(3) {
                    match row.iter().position(|&t| t == 1.0) {
                        Some(label) => class_draws[label] += 1,
                        None => class_draws[3] += 1,
                    }
                    positions += 1;
                }
            }
        }
        for (class, &draws) in class_draws.iter().enumerate() {
            let share = draws as f64 / positions as f64;
            assert!(
                (0.2..0.3).contains(&share),
                "class {class} got {share:.3} of draws, expected about 0.25"
            );
        }
    }

    #[test]
    fn dropping_the_iterator_mid_epoch_stops_and_joins_the_workers() {
        /// Counts reads, so the test can see whether anything still builds batches.
        struct Counting {
            inner: VecSource,
            reads: AtomicUsize,
        }
        impl ImageSource for Counting {
            fn size(&self) -> usize {
                self.inner.size()
            }
            fn len(&self) -> usize {
                self.inner.len()
            }
            fn pixels(&self, i: usize) -> &[u8] {
                self.reads.fetch_add(1, Ordering::SeqCst);
                self.inner.pixels(i)
            }
        }
        let source = Arc::new(Counting {
            inner: VecSource::new(8, vec![7; 64]).unwrap(),
            reads: AtomicUsize::new(0),
        });
        let config = LoaderConfig {
            batch_size: 4,
            workers: 3,
            prefetch: 2,
            ..LoaderConfig::default()
        };
        let loader = Loader::new(source.clone(), vec![0; 2000], vec![0; 2000], 1, config).unwrap();
        let mut epoch = loader.epoch(0);
        assert_eq!(epoch.next().unwrap().n, 4);
        assert_eq!(epoch.next().unwrap().n, 4);
        assert!(
            Arc::strong_count(&loader.shared) > 1,
            "workers should hold the plan while running"
        );
        // Workers are now blocked on full channels. Drop on another thread so that a hang
        // fails the test instead of stalling it.
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            drop(epoch);
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("dropping the epoch iterator hung: workers were not stopped");
        assert_eq!(
            Arc::strong_count(&loader.shared),
            1,
            "a worker outlived the dropped iterator"
        );
        let reads = source.reads.load(Ordering::SeqCst);
        assert!(reads < 2000, "workers kept building after the drop ({reads} reads)");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            source.reads.load(Ordering::SeqCst),
            reads,
            "images still read after the drop"
        );
    }

    #[test]
    #[should_panic(expected = "broken source")]
    fn a_worker_panic_reaches_the_consumer() {
        struct Broken;
        impl ImageSource for Broken {
            fn size(&self) -> usize {
                2
            }
            fn len(&self) -> usize {
                10
            }
            fn pixels(&self, i: usize) -> &[u8] {
                if i == 3 {
                    panic!("broken source");
                }
                &[0; 4]
            }
        }
        let config = LoaderConfig {
            batch_size: 1,
            shuffle: false,
            workers: 2,
            ..LoaderConfig::default()
        };
        let loader = Loader::new(Arc::new(Broken), (0..10).collect(), vec![0; 10], 1, config).unwrap();
        for _ in loader.epoch(0) {}
    }

    #[test]
    fn bad_inputs_are_rejected_with_a_reason() {
        let source: Arc<dyn ImageSource> = flat_source(3, 2);
        let new = |items: Vec<usize>, targets: Vec<u32>, labels, config| {
            Loader::new(source.clone(), items, targets, labels, config)
        };
        let ok = LoaderConfig::default;
        assert!(matches!(
            new(vec![0, 1], vec![0], 2, ok()),
            Err(Error::LengthMismatch { items: 2, targets: 1 })
        ));
        assert!(matches!(
            new(vec![0, 3], vec![0, 0], 2, ok()),
            Err(Error::IndexOutOfRange {
                position: 1,
                index: 3,
                len: 3
            })
        ));
        assert!(matches!(
            new(vec![0], vec![0b100], 2, ok()),
            Err(Error::LabelOutOfRange { mask: 4, .. })
        ));
        assert!(matches!(new(vec![0], vec![0], 0, ok()), Err(Error::Config(_))));
        assert!(new(vec![0], vec![u32::MAX], 32, ok()).is_ok());
        for config in [
            LoaderConfig { batch_size: 0, ..ok() },
            LoaderConfig { std: 0.0, ..ok() },
            LoaderConfig { mean: f32::NAN, ..ok() },
            LoaderConfig {
                augment: AugmentConfig {
                    scale: -0.1,
                    ..AugmentConfig::default()
                },
                ..ok()
            },
        ] {
            let err = new(vec![0], vec![0], 1, config.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {config:?}"));
            assert!(matches!(err, Error::Config(_) | Error::Augment(_)), "{err}");
        }
        assert!(
            VecSource::new(3, vec![0; 10]).is_err(),
            "a partial image must be refused"
        );
    }

    #[test]
    fn loader_and_epochs_can_move_to_the_training_thread() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Loader>();
        send::<EpochBatches>();
        send::<Batch>();
    }

    #[test]
    fn an_empty_split_has_no_batches() {
        let loader = Loader::new(
            flat_source(1, 2),
            vec![],
            vec![],
            1,
            LoaderConfig {
                balanced: true,
                ..LoaderConfig::default()
            },
        )
        .unwrap();
        assert_eq!(loader.epoch(0).count(), 0);
    }
}

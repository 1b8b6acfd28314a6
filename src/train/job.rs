//! One training job end to end, shared by the CLI and the dashboard's worker: find the data set
//! (the demo set when none is given), cache it at the run's image size, split it by patient,
//! build loaders, pick the backend and run the loop. Knows nothing about the store or HTTP: it
//! reports through an [`EventSink`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;

use crate::data::cache::{self, BuildOptions, Cache};
use crate::data::images::ImageIndex;
use crate::data::labels::NO_FINDING;
use crate::data::loader::{self, ImageSource, Loader, LoaderConfig};
use crate::data::split::{self, SplitOptions};
use crate::data::table;
use crate::data::{LabelTable, Task};
use crate::model::Classifier;
use crate::train::backend::{self, BackendKind};
use crate::train::checkpoint::{InferenceInfo, Slot};
use crate::train::config::{NoFinding, Normalisation, TrainConfig};
use crate::train::heldout::{self, TestReport};
use crate::train::metrics;
use crate::train::predict::{CheckpointRef, Predictor};
use crate::train::runner::{self, BatchSource, CancelHandle, ImageClassifier, Outcome, RunSetup};
use crate::train::{Error, EventSink, FieldError, Result};

impl ImageClassifier for Classifier {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        Classifier::forward(self, images)
    }

    fn take_head_grads(&self, grads: &mut burn::tensor::Gradients) -> Option<burn::optim::GradientsParams> {
        Some(Classifier::take_head_grads(self, grads))
    }
}

/// Where a job reads and writes.
#[derive(Debug, Clone)]
pub struct JobPaths {
    /// Store, demo data set (`demo/`) and caches (`cache/`).
    pub data_dir: PathBuf,
    /// Checkpoints, one folder per run.
    pub ckpt_dir: PathBuf,
}

impl JobPaths {
    pub fn demo_dir(&self) -> PathBuf {
        self.data_dir.join("demo")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
}

/// The label file and image folder a config points at; the demo set when it names none.
pub fn dataset_paths(config: &TrainConfig, paths: &JobPaths) -> Result<(PathBuf, PathBuf)> {
    match (&config.labels, &config.images) {
        (Some(labels), Some(images)) => Ok((labels.clone(), images.clone())),
        (Some(labels), None) => {
            let folder = labels.parent().unwrap_or(Path::new("."));
            Ok((labels.clone(), folder.to_path_buf()))
        }
        (None, Some(_)) => Err(Error::Config(vec![FieldError {
            field: "labels".into(),
            message: "--images needs --labels: the label file says which images to use".into(),
        }])),
        (None, None) => {
            let demo = crate::data::demo::ensure(paths.demo_dir())?;
            Ok((demo.label_file, demo.out.join("images")))
        }
    }
}

/// A short name for the data set, shown in run lists: `demo` for the synthetic set.
pub fn dataset_name(config: &TrainConfig, paths: &JobPaths) -> String {
    if let Some(name) = &config.dataset {
        return name.clone();
    }
    match &config.labels {
        None => "demo".into(),
        Some(labels) if labels.starts_with(paths.demo_dir()) => "demo".into(),
        Some(labels) => labels.display().to_string(),
    }
}

/// One split's cache indices and their label bitmasks.
pub type SplitRows = (Vec<usize>, Vec<u32>);

/// Data ready for the loop: the cache and which cache images belong to each split.
pub struct PreparedData {
    pub labels: Vec<String>,
    pub task: Task,
    pub cache: Arc<Cache>,
    /// Cache indices and label bitmasks per split.
    pub train: SplitRows,
    pub val: SplitRows,
    pub test: SplitRows,
    /// Patient id of each test image (the bootstrap resamples patients).
    pub test_patients: Vec<String>,
    pub dataset: String,
}

/// How a run splits its label file; the same options always give the same split.
pub fn split_options(config: &TrainConfig) -> SplitOptions {
    SplitOptions {
        strategy: config.split,
        val_fraction: config.val_fraction as f64,
        test_fraction: config.test_fraction as f64,
        per_class: config.per_class,
        seed: config.seed,
        lists_dir: None,
        images_dir: None,
    }
}

/// How many of a split's `n` images a run uses: `--max-images` keeps the split proportions,
/// each split getting its share of the cap. `None`: all of them.
pub fn max_images_share(config: &TrainConfig, split: &split::Split, n: usize) -> Option<usize> {
    let total = (split.train.len() + split.val.len() + split.test.len()).max(1);
    config
        .max_images
        .map(|cap| ((cap as f64 * n as f64 / total as f64).ceil() as usize).max(1))
}

/// Progress of the data preparation (cache building), as (done, total).
pub type DataProgress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// The run's label table and its split: the training file split by the run's options, or, with
/// `val_labels` and `test_labels`, the three files appended and used as the split they are (a
/// patient in two of them is reported, not moved).
pub fn load_split(config: &TrainConfig, paths: &JobPaths) -> Result<(LabelTable, split::Split)> {
    let (labels_path, _) = dataset_paths(config, paths)?;
    let (Some(val_path), Some(test_path)) = (&config.val_labels, &config.test_labels) else {
        let table = LabelTable::load(&labels_path)?;
        let split = split::split(&table, &split_options(config))?;
        return Ok((table, split));
    };
    let files = split::FileSplit::load(&labels_path, val_path, test_path)?;
    for shared in files.shared_patients() {
        tracing::warn!("{shared}");
    }
    let report = split::SplitReport {
        strategy: config.split,
        seed: config.seed,
        parts: Vec::new(),
        missing_on_disk: 0,
        not_in_lists: 0,
        shortfalls: Vec::new(),
    };
    let split = split::Split {
        train: files.train.collect(),
        val: files.val.collect(),
        test: files.test.collect(),
        report,
    };
    Ok((files.table, split))
}

pub fn prepare_data(config: &TrainConfig, paths: &JobPaths, progress: Option<DataProgress>) -> Result<PreparedData> {
    let (_, images_dir) = dataset_paths(config, paths)?;
    let (table, split) = load_split(config, paths)?;
    let index = ImageIndex::scan(&images_dir)?;
    let options = BuildOptions {
        allow_missing: config.allow_missing_images,
        threads: config.threads,
        progress,
        force: false,
    };
    let (cache, _report) = cache::build(&table, &index, config.image_size, paths.cache_dir(), &options)?;

    let pick = |rows: &[usize], limit: Option<usize>| -> (Vec<usize>, Vec<u32>) {
        rows.iter()
            .filter_map(|&row| {
                let record = &table.records[row];
                cache.index_of(&record.image).map(|i| (i, record.targets))
            })
            .take(limit.unwrap_or(usize::MAX))
            .unzip()
    };
    let share = |n: usize| max_images_share(config, &split, n);
    let train = pick(&split.train, share(split.train.len()));
    let val = pick(&split.val, share(split.val.len()));
    let test = pick(&split.test, share(split.test.len()));
    let test_patients: Vec<String> = split
        .test
        .iter()
        .map(|&row| &table.records[row])
        .filter(|record| cache.index_of(&record.image).is_some())
        .take(test.0.len())
        .map(|record| record.patient.clone())
        .collect();
    let (labels, [train, val, test]) = with_no_finding(config.no_finding, &table, [train, val, test])?;
    let kept = chosen_labels(config, &labels, &train.1)?;
    let single_label = table.task == Task::SingleLabel;
    let (train, _) = keep_labels(train, &kept, single_label, None);
    let (val, _) = keep_labels(val, &kept, single_label, None);
    let (test, test_patients) = keep_labels(test, &kept, single_label, Some(test_patients));
    let test_patients = test_patients.unwrap_or_default();
    if train.0.is_empty() || val.0.is_empty() {
        return Err(Error::Data(crate::data::Error::Invalid(format!(
            "the split left {} training and {} validation images: use more images or a larger --val-fraction",
            train.0.len(),
            val.0.len()
        ))));
    }
    Ok(PreparedData {
        labels: kept.iter().map(|&l| labels[l].clone()).collect(),
        task: table.task,
        cache: Arc::new(cache),
        train,
        val,
        test,
        test_patients,
        dataset: dataset_name(config, paths),
    })
}

/// The label file's labels, with "No Finding" appended as a last label when the run asks for it
/// and the file only implies it (NIH's: no finding listed), set exactly on the images with no
/// finding in the splits' label masks. Taking the label out of a file that has it is
/// `chosen_labels`' part.
fn with_no_finding(
    choice: NoFinding,
    table: &LabelTable,
    mut splits: [SplitRows; 3],
) -> Result<(Vec<String>, [SplitRows; 3])> {
    let mut labels = table.labels.clone();
    if choice == NoFinding::Label && !labels.iter().any(|l| l == NO_FINDING) {
        if labels.len() >= 32 {
            return Err(Error::Data(crate::data::Error::Invalid(format!(
                "the label file has {} labels; with \"No Finding\" added that is more than the 32 a run can train",
                labels.len()
            ))));
        }
        let bit = 1u32 << labels.len();
        labels.push(NO_FINDING.to_string());
        for (_, bits) in &mut splits {
            bits.iter_mut().filter(|b| **b == 0).for_each(|b| *b = bit);
        }
    }
    Ok((labels, splits))
}

/// The labels a run trains on, as indices into the label file's: `labels_include` (all when
/// empty), then those with at least `min_label_count` positives among the training images.
pub fn chosen_labels(config: &TrainConfig, labels: &[String], train_bits: &[u32]) -> Result<Vec<usize>> {
    let invalid = |message: String| Error::Data(crate::data::Error::Invalid(message));
    let mut kept: Vec<usize> = (0..labels.len()).collect();
    if !config.labels_include.is_empty() {
        kept = Vec::new();
        for wanted in &config.labels_include {
            let found = labels.iter().position(|l| l.eq_ignore_ascii_case(wanted.trim()));
            let index = found.ok_or_else(|| {
                let hint = if wanted.trim().eq_ignore_ascii_case(NO_FINDING) {
                    " (this file implies \"No Finding\" by listing no finding: add --no-finding label to make it one)"
                } else {
                    ""
                };
                invalid(format!(
                    "labels_include names '{wanted}', which the label file does not have{hint}; it has: {}",
                    labels.join(", ")
                ))
            })?;
            kept.push(index);
        }
        kept.sort_unstable();
    }
    let no_finding = labels.iter().position(|l| l == NO_FINDING);
    match (config.no_finding, no_finding) {
        (NoFinding::NotALabel, Some(_))
            if config
                .labels_include
                .iter()
                .any(|l| l.trim().eq_ignore_ascii_case(NO_FINDING)) =>
        {
            return Err(invalid(
                "labels_include names \"No Finding\" but no_finding is not-a-label: choose one".into(),
            ));
        }
        (NoFinding::NotALabel, Some(index)) => kept.retain(|&l| l != index),
        // Asked for explicitly: kept whatever the other choices say.
        (NoFinding::Label, Some(index)) if !kept.contains(&index) => {
            kept.push(index);
            kept.sort_unstable();
        }
        _ => {}
    }
    let protected = no_finding.filter(|_| config.no_finding == NoFinding::Label);
    if let Some(minimum) = config.min_label_count {
        let counts = loader::label_counts(train_bits, labels.len());
        let positives = |label: usize| counts[label].positives;
        let dropped: Vec<String> = kept
            .iter()
            .filter(|&&l| positives(l) < minimum && Some(l) != protected)
            .map(|&l| format!("{} ({})", labels[l], positives(l)))
            .collect();
        kept.retain(|&l| positives(l) >= minimum || Some(l) == protected);
        if !dropped.is_empty() {
            tracing::info!("min_label_count {minimum}: dropped {}", dropped.join(", "));
        }
    }
    if kept.is_empty() {
        return Err(invalid(format!(
            "no label is left to train: none has {} positive training images; lower --min-label-count \
             or choose other --labels-include",
            config.min_label_count.unwrap_or(1)
        )));
    }
    Ok(kept)
}

/// A split's label masks over the `kept` labels only (bit k = kept[k]). For single-label data an
/// image whose class was dropped leaves the split (it has no class left); multi-label images stay
/// with their other labels. `patients` follow the images they belong to.
fn keep_labels(
    (images, bits): SplitRows,
    kept: &[usize],
    single_label: bool,
    patients: Option<Vec<String>>,
) -> (SplitRows, Option<Vec<String>>) {
    let width = kept.iter().max().map_or(0, |&l| l + 1);
    let new_index: Vec<Option<usize>> = (0..width).map(|l| kept.iter().position(|&k| k == l)).collect();
    let remap = |old: u32| table::remap_bits(old, &new_index);
    let keep = |old: u32| !single_label || old == 0 || remap(old) != 0;
    let chosen: Vec<bool> = bits.iter().map(|&b| keep(b)).collect();
    let patients = patients.map(|p| p.into_iter().zip(&chosen).filter(|(_, &c)| c).map(|(p, _)| p).collect());
    let (images, bits) = images
        .into_iter()
        .zip(bits)
        .zip(&chosen)
        .filter(|(_, &c)| c)
        .map(|((image, b), _)| (image, remap(b)))
        .unzip();
    ((images, bits), patients)
}

/// The cache as the loader's pixel source.
struct CacheSource(Arc<Cache>);

impl ImageSource for CacheSource {
    fn size(&self) -> usize {
        self.0.size() as usize
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn pixels(&self, i: usize) -> &[u8] {
        self.0.image(i)
    }
}

/// Training and validation loaders as the loop's batch source.
struct Loaders {
    train: Loader,
    val: Loader,
}

impl BatchSource for Loaders {
    fn train_batches(&mut self, epoch: usize) -> Box<dyn Iterator<Item = runner::Batch> + '_> {
        Box::new(self.train.epoch(epoch as u64))
    }
    fn val_batches(&mut self) -> Box<dyn Iterator<Item = runner::Batch> + '_> {
        Box::new(self.val.epoch(0))
    }
    fn train_batch_count(&self) -> usize {
        self.train.num_batches()
    }
}

/// Loader threads: leave the cores to the tensor backend, but keep one batch building ahead.
fn loader_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 4).clamp(1, 8))
        .unwrap_or(1)
}

fn loaders(config: &TrainConfig, data: &PreparedData) -> Result<Loaders> {
    let source: Arc<dyn ImageSource> = Arc::new(CacheSource(data.cache.clone()));
    let (mean, std) = run_normalisation(config, &data.cache);
    let workers = loader_workers();
    let train_config = LoaderConfig {
        batch_size: config.batch_size,
        shuffle: true,
        seed: config.seed,
        augment: config.augment.clone(),
        mean,
        std,
        balanced: config.balanced_sampling,
        drop_last: false,
        workers,
        prefetch: 2 * workers + 1,
    };
    let val_config = LoaderConfig {
        workers,
        prefetch: 2 * workers + 1,
        ..LoaderConfig::eval(config.batch_size, mean, std)
    };
    let n = data.labels.len();
    let err = |e: loader::Error| Error::Data(e.into());
    Ok(Loaders {
        train: Loader::new(
            source.clone(),
            data.train.0.clone(),
            data.train.1.clone(),
            n,
            train_config,
        )
        .map_err(err)?,
        val: Loader::new(source, data.val.0.clone(), data.val.1.clone(), n, val_config).map_err(err)?,
    })
}

/// The run's normalisation: ImageNet's constants when asked, else the data set's own.
fn run_normalisation(config: &TrainConfig, cache: &Cache) -> (f32, f32) {
    match config.normalisation {
        Normalisation::Imagenet => crate::train::weights::imagenet_gray(),
        Normalisation::Dataset => normalisation(cache),
    }
}

/// The loader's normalisation: the cache's pixel statistics on the 0..1 scale (std floored so a
/// flat data set cannot divide by zero).
fn normalisation(cache: &Cache) -> (f32, f32) {
    ((cache.mean() / 255.0) as f32, ((cache.std() / 255.0) as f32).max(1e-3))
}

fn inference_info(config: &TrainConfig, data: &PreparedData) -> InferenceInfo {
    let (mean, std) = run_normalisation(config, &data.cache);
    InferenceInfo {
        labels: data.labels.clone(),
        image_size: config.image_size,
        mean,
        std,
    }
}

/// Metrics of one pass as the flat JSON object the loop, the store and the pages read:
/// `mean_auroc`, `map`, `accuracy` (see below), the three named accuracies, `per_label`, ...
pub fn metrics_json(labels: &[String], task: Task, probabilities: &[f32], targets: &[f32]) -> serde_json::Value {
    let evaluation = metrics::evaluate(labels, task, probabilities, targets, None);
    let mut value = serde_json::to_value(&evaluation).unwrap_or_default();
    // "accuracy" is the one the school project meant for single-label data (top-1) and the
    // per-label accuracy at 0.5 for multi-label data; both others stay under their own names.
    let accuracy = match task {
        Task::SingleLabel => evaluation.top1_accuracy,
        Task::MultiLabel => evaluation.accuracy_per_label,
    };
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("accuracy".into(), serde_json::json!(accuracy));
    }
    value
}

/// Runs one job on the calling thread (the caller owns the thread: the CLI's main thread or the
/// dashboard's worker). Events go to `events`; the data set is prepared first.
pub fn run_job(
    config: &TrainConfig,
    run_id: &str,
    paths: &JobPaths,
    resume: bool,
    events: &mut dyn EventSink,
    cancel: &CancelHandle,
    progress: Option<DataProgress>,
) -> Result<Outcome> {
    if let Err(errors) = config.validate() {
        let err = Error::Config(errors);
        events.emit(crate::train::TrainEvent::Failed {
            message: err.to_string(),
        });
        return Err(err);
    }
    let prepared = match prepare_data(config, paths, progress) {
        Ok(p) => p,
        Err(e) => {
            events.emit(crate::train::TrainEvent::Failed { message: e.to_string() });
            return Err(e);
        }
    };
    if let Some(threads) = config.threads {
        if let Err(e) = backend::set_cpu_threads(threads) {
            tracing::warn!("{e}");
        }
    }
    let resolved = match backend::resolve(config.device) {
        Ok(r) => r,
        Err(e) => {
            let err = Error::Config(vec![FieldError {
                field: "device".into(),
                message: e.to_string(),
            }]);
            events.emit(crate::train::TrainEvent::Failed {
                message: err.to_string(),
            });
            return Err(err);
        }
    };
    tracing::info!("{}", resolved.message);
    let device_name = match &resolved.kind {
        BackendKind::Cpu => "cpu (flex)".to_string(),
        BackendKind::Cuda(info) => format!("cuda:0 ({})", info.name),
    };
    let num_labels = prepared.labels.len();
    let setup = RunSetup {
        config: config.clone(),
        run_id: run_id.to_string(),
        ckpt_dir: paths.ckpt_dir.clone(),
        device: resolved.kind.train_device(),
        device_name,
        num_labels,
        pos_weight: config
            .pos_weight
            .then(|| loader::pos_weights(&prepared.train.1, num_labels)),
        resume,
        inference: Some(inference_info(config, &prepared)),
    };
    let test_device = resolved.kind.device();
    run_on(config, setup, prepared, &test_device, events, cancel)
}

/// Trains a prepared job: the loaders, then the runner, with a device out-of-memory panic turned
/// into the run's failure.
fn run_on(
    config: &TrainConfig,
    setup: RunSetup,
    prepared: PreparedData,
    test_device: &Device,
    events: &mut dyn EventSink,
    cancel: &CancelHandle,
) -> Result<Outcome> {
    let mut data = match loaders(config, &prepared) {
        Ok(l) => l,
        Err(e) => {
            events.emit(crate::train::TrainEvent::Failed { message: e.to_string() });
            return Err(e);
        }
    };
    let num_labels = setup.num_labels;
    let spec = config.model_spec();
    // Weights to start from are read and fitted before training starts, so a file that does not
    // fit fails the run at once with the key and shapes; a resumed run has its own checkpoint.
    let initial = match (&config.init_weights, setup.resume) {
        (Some(path), false) => {
            setup.device.seed(config.seed);
            match crate::train::weights::import_into(&spec, num_labels, path, &setup.device) {
                Ok((model, report)) => {
                    if let Some(note) = &report.head_reason {
                        tracing::info!(
                            "init weights {}: classifier head re-initialised: {note}",
                            path.display()
                        );
                    }
                    events.emit(crate::train::TrainEvent::WeightsLoaded {
                        path: path.clone(),
                        tensors: report.tensors,
                        head_kept: report.head_kept,
                        head_note: report.head_reason,
                        stem_folded: report.stem_folded,
                    });
                    Some(model)
                }
                Err(e) => {
                    events.emit(crate::train::TrainEvent::Failed { message: e.to_string() });
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let labels = prepared.labels.clone();
    let task = prepared.task;
    let metrics = move |probs: &[f32], targets: &[f32], _n: usize| metrics_json(&labels, task, probs, targets);
    let (batch_size, image_size) = (config.batch_size, config.image_size);
    let (run_id, ckpt_dir) = (setup.run_id.clone(), setup.ckpt_dir.clone());
    let mut held = HoldFinished {
        inner: &mut *events,
        finished: None,
    };
    // A GPU that runs out of memory makes Burn panic mid-step. That one panic becomes the run's
    // failure with what to change; any other panic goes on to the caller (the queue records it).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner::train::<Classifier, _>(
            setup,
            move |device| initial.unwrap_or_else(|| Classifier::new(&spec, num_labels, device)),
            &mut data,
            &metrics,
            &mut held,
            cancel,
        )
    }));
    let finished = held.finished.take();
    match outcome {
        Ok(result) => {
            if let Some(finished) = finished {
                let report = score_on_test(config, &run_id, &ckpt_dir, test_device, &prepared);
                events.emit(crate::train::TrainEvent::Test {
                    report: Box::new(report),
                });
                events.emit(finished);
            }
            result
        }
        Err(payload) => {
            let message = backend::panic_message(payload.as_ref());
            if !backend::is_out_of_memory(&message) {
                std::panic::resume_unwind(payload);
            }
            Err(out_of_memory(batch_size, image_size, &message, events))
        }
    }
}

/// Passes every event on except `Finished`, which it keeps: the held-out test results are
/// reported before the run says it is done.
struct HoldFinished<'a> {
    inner: &'a mut dyn EventSink,
    finished: Option<crate::train::TrainEvent>,
}

impl EventSink for HoldFinished<'_> {
    fn emit(&mut self, event: crate::train::TrainEvent) {
        match event {
            crate::train::TrainEvent::Finished { .. } => self.finished = Some(event),
            other => self.inner.emit(other),
        }
    }
}

/// The run's best checkpoint scored once on the test split, with the thresholds it tuned on
/// validation. Never fails the run: a problem becomes the report's note.
fn score_on_test(
    config: &TrainConfig,
    run_id: &str,
    ckpt_dir: &std::path::Path,
    device: &Device,
    data: &PreparedData,
) -> TestReport {
    let scored = CheckpointRef::locate(run_id, ckpt_dir, Slot::Best)
        .and_then(|best| Predictor::load(&best, device))
        .map(|model| test_report(&model, config.seed, data));
    scored.unwrap_or_else(|e| {
        tracing::warn!(run = run_id, "scoring the test split failed: {e}");
        TestReport::empty(format!("the test split could not be scored: {e}"))
    })
}

/// `model` on the test split of `data`, with its validation thresholds.
fn test_report(model: &Predictor, seed: u64, data: &PreparedData) -> TestReport {
    if data.test.0.is_empty() {
        return TestReport::empty(
            "the test split is empty (--test-fraction 0, or too few patients): no held-out results",
        );
    }
    let images: Vec<&[u8]> = data.test.0.iter().map(|&i| data.cache.image(i)).collect();
    let probs = model.probabilities(&images);
    let targets = metrics::targets_from_bits(&data.test.1, data.labels.len());
    let mut report = heldout::score(
        &data.labels,
        data.task,
        &probs,
        &targets,
        model.thresholds(),
        &data.test_patients,
        seed,
    );
    report.epoch = Some(model.state().epoch);
    if let Some(confusion) = &report.confusion {
        let train_counts: Vec<usize> = loader::label_counts(&data.train.1, data.labels.len())
            .iter()
            .map(|count| count.positives)
            .collect();
        report.shot_groups = heldout::shot_groups(&data.labels, confusion, &train_counts);
    }
    // The same checkpoint's validation curves, beside the test ones on the pages.
    let val_images: Vec<&[u8]> = data.val.0.iter().map(|&i| data.cache.image(i)).collect();
    let val_targets = metrics::targets_from_bits(&data.val.1, data.labels.len());
    report.val_curves = heldout::curves(&data.labels, &model.probabilities(&val_images), &val_targets);
    report
}

/// Scores a run's best checkpoint on its test split now, on the CPU (a run that was cancelled or
/// interrupted after a best epoch, or one trained before test results were kept). The data are
/// prepared from the config stored in the checkpoint, as training prepared them.
pub fn score_best_on_test(run_id: &str, paths: &JobPaths) -> Result<TestReport> {
    let best = CheckpointRef::locate(run_id, &paths.ckpt_dir, Slot::Best)?;
    let model = Predictor::load(&best, &BackendKind::Cpu.device())?;
    let config = model.state().config.clone();
    let data = prepare_data(&config, paths, None)?;
    Ok(test_report(&model, config.seed, &data))
}

/// The run's failure for a device out-of-memory panic, reported as its `Failed` event.
fn out_of_memory(batch_size: usize, image_size: u32, panic_message: &str, events: &mut dyn EventSink) -> Error {
    let detail = panic_message.lines().next().unwrap_or(panic_message).trim().to_string();
    let err = Error::OutOfMemory {
        batch_size,
        image_size,
        detail,
    };
    events.emit(crate::train::TrainEvent::Failed {
        message: err.to_string(),
    });
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_labels_are_renumbered_and_single_label_images_of_dropped_classes_leave() {
        // Labels 0..4; keep 1 and 3. Image bits: {0}, {1}, {1,3}, {2}, none.
        let split = (vec![10, 11, 12, 13, 14], vec![0b0001, 0b0010, 0b1010, 0b0100, 0]);
        let patients = vec!["a", "b", "c", "d", "e"].into_iter().map(String::from).collect();
        let ((images, bits), _) = keep_labels(split.clone(), &[1, 3], false, None);
        assert_eq!(images, vec![10, 11, 12, 13, 14], "multi-label images all stay");
        assert_eq!(bits, vec![0, 0b01, 0b11, 0, 0]);
        let ((images, bits), patients) = keep_labels(split, &[1, 3], true, Some(patients));
        assert_eq!(images, vec![11, 12, 14], "single-label images of dropped classes leave");
        assert_eq!(bits, vec![0b01, 0b11, 0]);
        assert_eq!(patients.unwrap(), vec!["b", "c", "e"]);
    }
    use crate::train::TrainEvent;

    #[test]
    fn a_gpu_out_of_memory_fails_the_run_naming_the_batch_size() {
        let panic = "out of device memory allocating 8589934592 bytes\n   0: backtrace line";
        let mut events = Vec::new();
        let mut sink = |e: TrainEvent| events.push(e);
        let err = out_of_memory(64, 224, panic, &mut sink).to_string();
        assert!(
            err.contains("batch size 64")
                && err.contains("224 px")
                && err.contains("8589934592 bytes")
                && err.contains("e.g. to 32")
                && !err.contains("backtrace"),
            "{err}"
        );
        match events.as_slice() {
            [TrainEvent::Failed { message }] => assert_eq!(message, &err),
            other => panic!("expected one Failed event, got {other:?}"),
        }
    }
}

//! The training loop. It runs on its own `std::thread` ([`spawn`]) or the caller's ([`train`]),
//! is generic over the model ([`ImageClassifier`]), the batch source ([`BatchSource`]) and the
//! metrics ([`EpochMetrics`]), and reports everything as [`TrainEvent`]s. It stops between batches
//! when cancelled, fails with a hint when the loss stops being finite, checkpoints every epoch,
//! resumes from the last checkpoint and stops early when the watched metric stalls.

mod checkpointing;
mod passes;
mod progress;
pub mod steps;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use checkpointing::FinishedEpoch;
use passes::Step;
use progress::Progress;
use steps::{StepPoints, MIN_STEP_EVENT_INTERVAL};

use super::checkpoint::{InferenceInfo, RunCheckpoints};
use super::config::TrainConfig;
use super::error::{Error, Result};
use super::event::{EventSink, TrainEvent};
use super::loss::Loss;
use super::optim::Optim;

/// A network that maps images `[n, 1, S, S]` to logits `[n, labels]`. The model module implements
/// it for its `Classifier`; the loop needs nothing else from a model.
pub trait ImageClassifier: Module {
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// Takes the classifier head's gradients out of `grads` (the rest are the backbone's), for a
    /// frozen backbone or a lower backbone learning rate; `None` for a model without that split.
    fn take_head_grads(&self, _grads: &mut burn::tensor::Gradients) -> Option<burn::optim::GradientsParams> {
        None
    }
}

/// One CPU batch, as the data loader builds it: normalised gray images and 0/1 targets.
pub use crate::data::loader::Batch;

/// Checks the batch's buffers match its stated shape and the run's label count.
pub fn check_batch(batch: &Batch, num_labels: usize) -> Result<()> {
    if batch.n == 0 {
        return Err(Error::Batch("empty batch".into()));
    }
    if batch.num_labels != num_labels {
        return Err(Error::Batch(format!(
            "batch has {} labels, the model {num_labels}",
            batch.num_labels
        )));
    }
    if batch.images.len() != batch.n * batch.size * batch.size {
        return Err(Error::Batch(format!(
            "{} image values for {} images of {}x{}",
            batch.images.len(),
            batch.n,
            batch.size,
            batch.size
        )));
    }
    if batch.targets.len() != batch.n * batch.num_labels {
        return Err(Error::Batch(format!(
            "{} target values for {} images x {} labels",
            batch.targets.len(),
            batch.n,
            batch.num_labels
        )));
    }
    Ok(())
}

/// The batch as `[n, 1, size, size]` images and `[n, labels]` targets on `device`.
fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<4>, Tensor<2>) {
    let images = Tensor::from_data(
        TensorData::new(batch.images.clone(), [batch.n, 1, batch.size, batch.size]),
        device,
    );
    let targets = Tensor::from_data(
        TensorData::new(batch.targets.clone(), [batch.n, batch.num_labels]),
        device,
    );
    (images, targets)
}

/// Where batches come from. The training order may depend on the epoch (shuffled from the run's
/// seed and the epoch number, so a resumed run sees the same order as a straight one).
pub trait BatchSource: Send {
    /// Training batches of 1-based `epoch`.
    fn train_batches(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Batch> + '_>;
    fn val_batches(&mut self) -> Box<dyn Iterator<Item = Batch> + '_>;
    /// Batches per training epoch (for progress).
    fn train_batch_count(&self) -> usize;
}

/// Per-epoch metrics from probabilities and targets (row-major `[n, num_labels]`). Should return
/// a JSON object; the loop adds `"loss"` to it and reads [`Monitor::key`] fields from it.
pub trait EpochMetrics: Send {
    fn evaluate(&self, probabilities: &[f32], targets: &[f32], num_labels: usize) -> serde_json::Value;
}

impl<F: Fn(&[f32], &[f32], usize) -> serde_json::Value + Send> EpochMetrics for F {
    fn evaluate(&self, probabilities: &[f32], targets: &[f32], num_labels: usize) -> serde_json::Value {
        self(probabilities, targets, num_labels)
    }
}

/// Stops a run between batches. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything a run needs besides the model, data, metrics and event sink.
#[derive(Debug, Clone)]
pub struct RunSetup {
    pub config: TrainConfig,
    pub run_id: String,
    /// Checkpoints go to `<ckpt_dir>/<run_id>/`.
    pub ckpt_dir: PathBuf,
    /// The training device (with autodiff); validation runs on its plain counterpart.
    pub device: Device,
    /// Shown in the `Started` event, e.g. "cpu (flex)" or "cuda:0".
    pub device_name: String,
    pub num_labels: usize,
    /// Per-label `neg/pos` from the training split ([`super::loss::pos_weights`]); ignored when
    /// resuming (the checkpoint's weights are used).
    pub pos_weight: Option<Vec<f32>>,
    /// Continue from `<ckpt_dir>/<run_id>/last.json` instead of starting afresh.
    pub resume: bool,
    /// Stored in every checkpoint so the model can be used on new images later.
    pub inference: Option<InferenceInfo>,
}

/// How a run ended without an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished {
        best_epoch: Option<usize>,
        best_metric: Option<f64>,
        stopped_early: bool,
    },
    Cancelled,
}

/// Seeds Burn's RNG per epoch (dropout, random init inside layers), so epoch `e` draws the same
/// numbers whether the run was resumed or not.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Starts [`train`] on a new thread named `train-<run-id>`; returns its handle and the cancel handle.
pub fn spawn<M, F, S, X, E>(
    setup: RunSetup,
    build_model: F,
    mut data: S,
    metrics: X,
    mut events: E,
) -> std::io::Result<(std::thread::JoinHandle<Result<Outcome>>, CancelHandle)>
where
    M: ImageClassifier + 'static,
    F: FnOnce(&Device) -> M + Send + 'static,
    S: BatchSource + 'static,
    X: EpochMetrics + 'static,
    E: EventSink + 'static,
{
    let cancel = CancelHandle::new();
    let handle_cancel = cancel.clone();
    let handle = std::thread::Builder::new()
        .name(format!("train-{}", setup.run_id))
        .spawn(move || train::<M, F>(setup, build_model, &mut data, &metrics, &mut events, &cancel))?;
    Ok((handle, handle_cancel))
}

/// Runs the whole training on the calling thread. Every end is reported as an event: `Finished`,
/// `Cancelled`, or `Failed` (then the error is also returned).
pub fn train<M, F>(
    setup: RunSetup,
    build_model: F,
    data: &mut dyn BatchSource,
    metrics: &dyn EpochMetrics,
    events: &mut dyn EventSink,
    cancel: &CancelHandle,
) -> Result<Outcome>
where
    M: ImageClassifier,
    F: FnOnce(&Device) -> M,
{
    let result = run_loop::<M, F>(setup, build_model, data, metrics, events, cancel);
    match &result {
        Ok(Outcome::Cancelled) => events.emit(TrainEvent::Cancelled),
        Ok(Outcome::Finished {
            best_epoch,
            best_metric,
            stopped_early,
        }) => events.emit(TrainEvent::Finished {
            best_epoch: *best_epoch,
            best_metric: *best_metric,
            stopped_early: *stopped_early,
        }),
        Err(e) => events.emit(TrainEvent::Failed { message: e.to_string() }),
    }
    result
}

/// Adds `"loss"` to the metrics object (wrapping a non-object under `"metrics"`).
fn with_loss(metrics: serde_json::Value, loss: f64) -> serde_json::Value {
    match metrics {
        serde_json::Value::Object(mut map) => {
            map.insert("loss".into(), loss.into());
            serde_json::Value::Object(map)
        }
        other => serde_json::json!({ "loss": loss, "metrics": other }),
    }
}

fn run_loop<M, F>(
    setup: RunSetup,
    build_model: F,
    data: &mut dyn BatchSource,
    metrics: &dyn EpochMetrics,
    events: &mut dyn EventSink,
    cancel: &CancelHandle,
) -> Result<Outcome>
where
    M: ImageClassifier,
    F: FnOnce(&Device) -> M,
{
    let config = &setup.config;
    config.validate().map_err(Error::Config)?;
    if setup.num_labels == 0 {
        return Err(Error::Batch("the data set has no labels".into()));
    }
    let ckpts = RunCheckpoints::new(&setup.ckpt_dir, &setup.run_id);

    setup.device.seed(config.seed);
    let mut model = build_model(&setup.device);
    let mut optim = Optim::from_config(config);
    let mut progress = Progress::fresh(config, setup.pos_weight.clone());
    if setup.resume {
        (model, optim, progress) = checkpointing::resume(&ckpts, config, setup.num_labels, model, optim)?;
        if progress.nothing_left(config) {
            // Killed after the last checkpoint but before the run was marked finished: it
            // finishes now with the checkpoint's best epoch instead of failing or training on.
            return Ok(progress.finished(progress.completed_epochs < config.epochs));
        }
    }

    model = config.precision.cast_module(model);
    let loss = Loss::from_config(config, progress.pos_weight.clone());
    let step = Step {
        device: &setup.device,
        dtype: config.precision.float_dtype(),
        loss: &loss,
        activation: config.activation(),
        num_labels: setup.num_labels,
        cancel,
        freeze_backbone_epochs: config.freeze_backbone_epochs,
        backbone_lr_factor: config.backbone_lr_factor,
    };
    events.emit(TrainEvent::Started {
        config: Box::new(config.clone()),
        run_id: setup.run_id.clone(),
        num_params: model.num_params(),
        device: setup.device_name.clone(),
        first_epoch: progress.completed_epochs + 1,
    });

    let batches_per_epoch = data.train_batch_count() as u64;
    let every = steps::step_interval(config.epochs as u64 * batches_per_epoch, config.step_points);
    let clock = progress.clock(batches_per_epoch);
    let mut points = StepPoints::new(every, MIN_STEP_EVENT_INTERVAL, clock, Instant::now());
    for epoch_index in progress.completed_epochs..config.epochs {
        let epoch = epoch_index + 1;
        let epoch_start = Instant::now();
        setup.device.seed(epoch_seed(config.seed, epoch_index));
        let trained = passes::train_epoch(
            model,
            &mut optim,
            &progress.schedule,
            epoch_index,
            data,
            &step,
            &mut points,
            events,
        )?;
        let Some((trained_model, train)) = trained else {
            return Ok(Outcome::Cancelled);
        };
        model = trained_model;
        let Some(val) = passes::validate_epoch(&model, epoch, data, &step)? else {
            return Ok(Outcome::Cancelled);
        };
        let num_labels = setup.num_labels;
        let train_metrics = with_loss(
            metrics.evaluate(&train.probabilities, &train.targets, num_labels),
            train.loss,
        );
        let val_metrics = if val.images > 0 {
            with_loss(metrics.evaluate(&val.probabilities, &val.targets, num_labels), val.loss)
        } else {
            serde_json::json!({})
        };
        let improved = progress.end_epoch(epoch, &val_metrics, config);
        progress.clock = Some(points.clock(Instant::now()));
        let finished = FinishedEpoch {
            epoch,
            train: train_metrics,
            val: val_metrics,
            lr: train.lr,
            seconds: epoch_start.elapsed().as_secs_f64(),
            improved,
        };
        checkpointing::save_and_report(&ckpts, &setup, &model, &optim, &progress, finished, events)?;
        if progress.stops_early(config, epoch) {
            return Ok(progress.finished(true));
        }
    }
    Ok(progress.finished(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::checkpoint::Slot;
    use crate::train::config::{LossKind, OptimizerKind};
    use burn::module::Param;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::sync::mpsc;

    const SIZE: usize = 8;
    const LABELS: usize = 2;

    /// A linear classifier on raw pixels, initialised from its own seeded RNG so tests do not
    /// depend on Burn's global RNG (which parallel tests share).
    #[derive(Module, Debug)]
    struct TinyNet {
        weight: Param<Tensor<2>>,
        bias: Param<Tensor<1>>,
    }

    impl ImageClassifier for TinyNet {
        fn forward(&self, images: Tensor<4>) -> Tensor<2> {
            let [n, _, _, _] = images.dims();
            let x = images.reshape([n, SIZE * SIZE]);
            x.matmul(self.weight.val()) + self.bias.val().unsqueeze::<2>()
        }
    }

    fn tiny_net(init_seed: u64, device: &Device) -> TinyNet {
        let mut rng = ChaCha8Rng::seed_from_u64(init_seed);
        let w: Vec<f32> = (0..SIZE * SIZE * LABELS).map(|_| rng.random_range(-0.1..0.1)).collect();
        TinyNet {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [SIZE * SIZE, LABELS]), device)),
            bias: Param::from_tensor(Tensor::zeros([LABELS], device)),
        }
    }

    /// Label 0: the top half is bright; label 1: the left half is bright; plus noise.
    fn toy_batches(count: usize, n: usize, seed: u64) -> Vec<Batch> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let mut images = Vec::new();
                let mut targets = Vec::new();
                for _ in 0..n {
                    let (top, left) = (rng.random_bool(0.5), rng.random_bool(0.5));
                    for y in 0..SIZE {
                        for x in 0..SIZE {
                            let mut v: f32 = rng.random_range(-0.5..0.5);
                            if top && y < SIZE / 2 {
                                v += 1.0;
                            }
                            if left && x < SIZE / 2 {
                                v += 1.0;
                            }
                            images.push(v);
                        }
                    }
                    targets.extend([top as u8 as f32, left as u8 as f32]);
                }
                Batch {
                    images,
                    targets,
                    n,
                    size: SIZE,
                    num_labels: LABELS,
                    indices: Vec::new(),
                }
            })
            .collect()
    }

    /// Fixed batches; can poison one with NaN or cancel the run when it hands out a given batch.
    struct ToySource {
        train: Vec<Batch>,
        val: Vec<Batch>,
        nan_at: Option<(usize, usize)>,
        cancel_at: Option<(usize, usize, CancelHandle)>,
    }

    impl ToySource {
        fn new() -> Self {
            ToySource {
                train: toy_batches(6, 16, 1),
                val: toy_batches(2, 32, 2),
                nan_at: None,
                cancel_at: None,
            }
        }
    }

    impl BatchSource for ToySource {
        fn train_batches(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
            let nan_at = self.nan_at;
            let cancel_at = self.cancel_at.clone();
            // Rotate the order by epoch, as a shuffling loader would, reproducibly.
            let count = self.train.len();
            Box::new((0..count).map(move |i| {
                let mut batch = self.train[(i + epoch) % count].clone();
                if nan_at == Some((epoch, i + 1)) {
                    batch.images[3] = f32::NAN;
                }
                if let Some((e, b, handle)) = &cancel_at {
                    if (*e, *b) == (epoch, i + 1) {
                        handle.cancel();
                    }
                }
                batch
            }))
        }
        fn val_batches(&mut self) -> Box<dyn Iterator<Item = Batch> + '_> {
            Box::new(self.val.iter().cloned())
        }
        fn train_batch_count(&self) -> usize {
            self.train.len()
        }
    }

    /// Mean AUROC by counting ordered positive/negative pairs (ties count half).
    fn toy_metrics(probs: &[f32], targets: &[f32], labels: usize) -> serde_json::Value {
        let n = probs.len() / labels;
        let mut aurocs = Vec::new();
        for l in 0..labels {
            let (mut wins, mut pairs) = (0.0, 0.0);
            for i in (0..n).filter(|&i| targets[i * labels + l] > 0.5) {
                for j in (0..n).filter(|&j| targets[j * labels + l] < 0.5) {
                    let (p, q) = (probs[i * labels + l], probs[j * labels + l]);
                    wins += if p > q {
                        1.0
                    } else if p == q {
                        0.5
                    } else {
                        0.0
                    };
                    pairs += 1.0;
                }
            }
            aurocs.push(wins / pairs);
        }
        serde_json::json!({ "mean_auroc": aurocs.iter().sum::<f64>() / labels as f64 })
    }

    fn config(epochs: usize) -> TrainConfig {
        TrainConfig {
            labels: Some("toy.csv".into()),
            epochs,
            lr: 0.05,
            optimizer: OptimizerKind::Adam,
            loss: LossKind::Bce,
            ..TrainConfig::default()
        }
    }

    fn setup(config: TrainConfig, dir: &std::path::Path, run_id: &str) -> RunSetup {
        RunSetup {
            config,
            run_id: run_id.into(),
            ckpt_dir: dir.to_path_buf(),
            device: Device::flex().autodiff(),
            device_name: "cpu".into(),
            num_labels: LABELS,
            pos_weight: None,
            resume: false,
            inference: None,
        }
    }

    fn run(setup: RunSetup, source: &mut ToySource) -> (Result<Outcome>, Vec<TrainEvent>) {
        run_with_cancel(setup, source, &CancelHandle::new())
    }

    fn run_with_cancel(
        setup: RunSetup,
        source: &mut ToySource,
        cancel: &CancelHandle,
    ) -> (Result<Outcome>, Vec<TrainEvent>) {
        let mut events = Vec::new();
        let mut sink = |e: TrainEvent| events.push(e);
        let result = train::<TinyNet, _>(setup, |d| tiny_net(7, d), source, &toy_metrics, &mut sink, cancel);
        (result, events)
    }

    fn epoch_events(events: &[TrainEvent]) -> Vec<(usize, serde_json::Value)> {
        events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Epoch { epoch, val, .. } => Some((*epoch, val.clone())),
                _ => None,
            })
            .collect()
    }

    fn val_of(v: &serde_json::Value, key: &str) -> f64 {
        v[key].as_f64().unwrap()
    }

    #[test]
    fn loss_decreases_and_the_toy_task_is_learnt() {
        let tmp = tempfile::tempdir().unwrap();
        let (result, events) = run(setup(config(5), tmp.path(), "learn"), &mut ToySource::new());
        let outcome = result.unwrap();
        let epochs = epoch_events(&events);
        assert_eq!(epochs.len(), 5);
        let (first, last) = (&epochs[0].1, &epochs[4].1);
        assert!(val_of(last, "loss") < val_of(first, "loss"), "{first} -> {last}");
        assert!(val_of(last, "mean_auroc") > 0.95, "{last}");
        assert!(matches!(
            events[0],
            TrainEvent::Started {
                first_epoch: 1,
                num_params: 130,
                ..
            }
        ));
        assert!(matches!(
            events.last(),
            Some(TrainEvent::Finished {
                stopped_early: false,
                ..
            })
        ));
        assert!(matches!(
            outcome,
            Outcome::Finished {
                best_epoch: Some(_),
                ..
            }
        ));
        assert!(events.iter().any(|e| matches!(
            e,
            TrainEvent::Batch {
                epoch: 1,
                batch: 6,
                of: 6,
                ..
            }
        )));
    }

    #[test]
    fn a_bf16_run_learns_and_its_checkpoint_loads_into_an_f32_model() {
        use crate::train::backend::Precision;
        let tmp = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            precision: Precision::Bf16,
            ..config(3)
        };
        let (result, events) = run(setup(cfg, tmp.path(), "half"), &mut ToySource::new());
        result.unwrap();
        let epochs = epoch_events(&events);
        let losses: Vec<f64> = epochs.iter().map(|(_, v)| val_of(v, "loss")).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(losses[2] < losses[0], "bf16 training should still learn: {losses:?}");

        let ckpts = RunCheckpoints::new(tmp.path(), "half");
        let device = Device::flex();
        let model = ckpts.load_model(Slot::Last, tiny_net(100, &device)).unwrap();
        assert_eq!(model.weight.val().dtype(), burn::tensor::DType::F32);
        let (images, _) = batch_tensors(&ToySource::new().val[0], &device);
        let probabilities = model.forward(images).into_data().try_to_vec::<f32>().unwrap();
        assert!(probabilities.iter().all(|p| p.is_finite()));
    }

    #[test]
    fn checkpoint_reload_gives_the_same_predictions() {
        let tmp = tempfile::tempdir().unwrap();
        let (result, _) = run(setup(config(1), tmp.path(), "ckpt"), &mut ToySource::new());
        result.unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "ckpt");
        let state = ckpts.read_state(Slot::Best).unwrap().unwrap();
        assert_eq!(state.epoch, 1);
        let device = Device::flex();
        // Two different starting points give identical weights once the checkpoint is loaded.
        let a = ckpts.load_model(Slot::Best, tiny_net(100, &device)).unwrap();
        let b = ckpts.load_model(Slot::Best, tiny_net(200, &device)).unwrap();
        let val = &ToySource::new().val[0];
        let (images, _) = batch_tensors(val, &device);
        let pa = a.forward(images.clone()).into_data().try_to_vec::<f32>().unwrap();
        let pb = b.forward(images.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(pa, pb);
        let fresh = tiny_net(100, &device)
            .forward(images.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_ne!(pa, fresh);
        // And they are the predictions the run validated with: same loss over the validation set.
        let loss_fn = Loss::from_config(&state.config, None);
        let mut sum = 0.0;
        let source = ToySource::new();
        for batch in &source.val {
            let (x, y) = batch_tensors(batch, &device);
            let l: f32 = loss_fn.compute(a.forward(x), y).into_scalar::<f32>();
            sum += l as f64 * batch.n as f64;
        }
        let loss = sum / 64.0;
        assert!(
            (loss - val_of(&state.val_metrics, "loss")).abs() < 1e-6,
            "{loss} vs {}",
            state.val_metrics
        );
    }

    #[test]
    fn same_seed_gives_the_same_metrics() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, a) = run(setup(config(2), tmp.path(), "a"), &mut ToySource::new());
        let (_, b) = run(setup(config(2), tmp.path(), "b"), &mut ToySource::new());
        assert_eq!(epoch_events(&a), epoch_events(&b));
    }

    /// Runs `cfg` straight, and again cancelled during epoch 3 then resumed; the resumed epochs
    /// must equal the straight ones (weights, optimiser state, schedule and RNG all restored).
    fn assert_resume_matches_straight(cfg: TrainConfig, label: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let (_, straight) = run(setup(cfg.clone(), tmp.path(), "straight"), &mut ToySource::new());

        let cancel = CancelHandle::new();
        let mut source = ToySource::new();
        source.cancel_at = Some((3, 2, cancel.clone()));
        let (first, _) = run_with_cancel(setup(cfg.clone(), tmp.path(), "split"), &mut source, &cancel);
        assert_eq!(first.unwrap(), Outcome::Cancelled, "{label}");
        let mut again = setup(cfg, tmp.path(), "split");
        again.resume = true;
        let (second, resumed) = run(again, &mut ToySource::new());
        second.unwrap();
        assert!(
            matches!(resumed[0], TrainEvent::Started { first_epoch: 3, .. }),
            "{label}: {:?}",
            resumed[0]
        );
        let resumed_epochs = epoch_events(&resumed);
        assert_eq!(
            resumed_epochs.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            vec![3, 4],
            "{label}"
        );
        let straight_epochs = epoch_events(&straight);
        for ((e1, v1), (e2, v2)) in straight_epochs[2..].iter().zip(&resumed_epochs) {
            assert_eq!(e1, e2);
            let (l1, l2) = (val_of(v1, "loss"), val_of(v2, "loss"));
            assert!(
                (l1 - l2).abs() < 1e-6,
                "{label}, epoch {e1}: straight {l1}, resumed {l2}"
            );
        }
    }

    #[test]
    fn resume_continues_the_epoch_count_and_matches_a_straight_run() {
        assert_resume_matches_straight(config(4), "adam, constant");
        let sgd = TrainConfig {
            optimizer: OptimizerKind::Sgd,
            nesterov: true,
            lr: 0.1,
            schedule: crate::train::config::ScheduleKind::Cosine,
            warmup_epochs: 1,
            grad_clip: Some(1.0),
            weight_decay: 1e-4,
            ..config(4)
        };
        assert_resume_matches_straight(sgd, "sgd nesterov, cosine, clipping");
        let plateau = TrainConfig {
            optimizer: OptimizerKind::AdamW,
            weight_decay: 1e-2,
            schedule: crate::train::config::ScheduleKind::Plateau,
            plateau_patience: 1,
            loss: LossKind::Focal,
            ..config(4)
        };
        assert_resume_matches_straight(plateau, "adamw, plateau, focal");
    }

    #[test]
    fn a_straight_run_differs_without_restored_optimiser_state() {
        // Guards the test above: resuming Adam with fresh moments would change epoch 3.
        let tmp = tempfile::tempdir().unwrap();
        let (_, straight) = run(setup(config(3), tmp.path(), "s"), &mut ToySource::new());
        run(setup(config(2), tmp.path(), "p"), &mut ToySource::new()).0.unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "p");
        let last = ckpts.slot_dir(Slot::Last).unwrap().unwrap();
        // Without its file list, so the swapped optimiser file is not refused as damaged.
        std::fs::remove_file(last.join("files.json")).unwrap();
        std::fs::write(last.join("optim.bpk"), {
            let fresh: Optim = Optim::from_config(&config(3));
            fresh.to_bytes().unwrap()
        })
        .unwrap();
        let mut again = setup(config(3), tmp.path(), "p");
        again.resume = true;
        let (_, resumed) = run(again, &mut ToySource::new());
        let (a, b) = (&epoch_events(&straight)[2].1, &epoch_events(&resumed)[0].1);
        assert!((val_of(a, "loss") - val_of(b, "loss")).abs() > 1e-7, "{a} vs {b}");
    }

    /// Where an event sits: (global step, epoch, wall seconds).
    type Place = (u64, usize, f64);

    /// The places of a session's step points and of its epochs.
    fn step_axis(events: &[TrainEvent]) -> (Vec<Place>, Vec<Place>) {
        let mut points = Vec::new();
        let mut epochs = Vec::new();
        for event in events {
            match event {
                TrainEvent::Step {
                    step,
                    epoch,
                    wall_seconds,
                    ..
                } => points.push((*step, *epoch, *wall_seconds)),
                TrainEvent::Epoch {
                    step: Some(step),
                    epoch,
                    wall_seconds: Some(wall_seconds),
                    ..
                } => epochs.push((*step, *epoch, *wall_seconds)),
                _ => {}
            }
        }
        (points, epochs)
    }

    #[test]
    fn step_points_and_epochs_share_one_step_axis_and_clock_across_a_resume() {
        let tmp = tempfile::tempdir().unwrap();
        // 6 batches an epoch and a budget of 4 points: one every 3 steps over 2 epochs, every 6
        // once resumed for 4.
        let cfg = |epochs| TrainConfig {
            step_points: 4,
            ..config(epochs)
        };
        let (first, events) = run(setup(cfg(2), tmp.path(), "axis"), &mut ToySource::new());
        first.unwrap();
        let (points, epochs) = step_axis(&events);
        assert_eq!(epochs.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(), [(6, 1), (12, 2)]);
        // The first due point always comes; later ones only half a second apart (toy steps
        // take microseconds), so the run stays within its budget either way.
        assert_eq!((points[0].0, points[0].1), (3, 1), "{points:?}");
        assert!(points.len() <= 4 && points.iter().all(|p| p.0 % 3 == 0), "{points:?}");
        assert!(
            epochs[1].2 >= epochs[0].2 && epochs[0].2 >= points[0].2,
            "{epochs:?} {points:?}"
        );

        // Resumed for two more epochs: the axis and the clock go on from epoch 2's end.
        let mut again = setup(cfg(4), tmp.path(), "axis");
        again.resume = true;
        let (second, resumed) = run(again, &mut ToySource::new());
        second.unwrap();
        let (points, epochs) = step_axis(&resumed);
        assert_eq!(
            epochs.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
            [(18, 3), (24, 4)]
        );
        assert_eq!(
            (points[0].0, points[0].1),
            (18, 3),
            "one point every 24 / 4 = 6 steps: {points:?}"
        );
        let before = step_axis(&events).1[1].2;
        assert!(points[0].2 >= before, "the clock continues from {before}: {points:?}");
    }

    #[test]
    fn resume_refuses_a_different_config_and_finishes_a_run_with_nothing_left() {
        let tmp = tempfile::tempdir().unwrap();
        run(setup(config(1), tmp.path(), "r"), &mut ToySource::new()).0.unwrap();
        let mut changed = setup(TrainConfig { lr: 0.5, ..config(3) }, tmp.path(), "r");
        changed.resume = true;
        let (result, events) = run(changed, &mut ToySource::new());
        let message = result.unwrap_err().to_string();
        assert!(message.contains("lr"), "{message}");
        assert!(matches!(events.last(), Some(TrainEvent::Failed { .. })));

        // Killed after its last checkpoint but before it was marked done: finishes, trains nothing.
        let mut done = setup(config(1), tmp.path(), "r");
        done.resume = true;
        let (result, events) = run(done, &mut ToySource::new());
        assert!(
            matches!(
                result,
                Ok(Outcome::Finished {
                    best_epoch: Some(1),
                    stopped_early: false,
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(epoch_events(&events).is_empty());
        assert!(matches!(
            events.last(),
            Some(TrainEvent::Finished {
                best_epoch: Some(1),
                ..
            })
        ));

        let mut nothing = setup(config(2), tmp.path(), "never-ran");
        nothing.resume = true;
        let message = run(nothing, &mut ToySource::new()).0.unwrap_err().to_string();
        assert!(message.contains("no checkpoint"), "{message}");
    }

    #[test]
    fn cancel_stops_at_the_next_batch_and_keeps_the_last_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let cancel = CancelHandle::new();
        let mut source = ToySource::new();
        source.cancel_at = Some((2, 3, cancel.clone()));
        let (result, events) = run_with_cancel(setup(config(5), tmp.path(), "c"), &mut source, &cancel);
        assert_eq!(result.unwrap(), Outcome::Cancelled);
        assert_eq!(events.last(), Some(&TrainEvent::Cancelled));
        assert_eq!(epoch_events(&events).len(), 1, "epoch 2 must not complete");
        let ckpts = RunCheckpoints::new(tmp.path(), "c");
        assert_eq!(ckpts.read_state(Slot::Last).unwrap().unwrap().epoch, 1);
    }

    #[test]
    fn cancel_from_another_thread_stops_a_spawned_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let (handle, cancel) = spawn::<TinyNet, _, _, _, _>(
            setup(config(10_000), tmp.path(), "t"),
            |d| tiny_net(7, d),
            ToySource::new(),
            toy_metrics,
            tx,
        )
        .unwrap();
        // Wait for training to be under way, then cancel.
        loop {
            if let TrainEvent::Batch { .. } = rx.recv().unwrap() {
                break;
            }
        }
        cancel.cancel();
        assert_eq!(handle.join().unwrap().unwrap(), Outcome::Cancelled);
        let rest: Vec<TrainEvent> = rx.iter().collect();
        assert_eq!(rest.last(), Some(&TrainEvent::Cancelled));
    }

    #[test]
    fn a_nan_loss_fails_the_run_naming_epoch_batch_and_a_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let mut source = ToySource::new();
        source.nan_at = Some((1, 2));
        let (result, events) = run(setup(config(3), tmp.path(), "nan"), &mut source);
        assert!(
            matches!(result, Err(Error::NonFinite { epoch: 1, batch: 2, .. })),
            "{result:?}"
        );
        let Some(TrainEvent::Failed { message }) = events.last() else {
            panic!("no Failed event: {events:?}");
        };
        assert!(
            message.contains("epoch 1, batch 2") && message.contains("lower the learning rate"),
            "{message}"
        );
    }

    #[test]
    fn early_stopping_ends_the_run_when_the_metric_stalls() {
        let tmp = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        let mut sink = |e: TrainEvent| events.push(e);
        // A metric that never improves after the first epoch.
        let flat = |_: &[f32], _: &[f32], _: usize| serde_json::json!({ "mean_auroc": 0.5 });
        let cfg = TrainConfig {
            early_stopping: Some(2),
            ..config(10)
        };
        let outcome = train::<TinyNet, _>(
            setup(cfg, tmp.path(), "es"),
            |d| tiny_net(7, d),
            &mut ToySource::new(),
            &flat,
            &mut sink,
            &CancelHandle::new(),
        )
        .unwrap();
        assert_eq!(
            outcome,
            Outcome::Finished {
                best_epoch: Some(1),
                best_metric: Some(0.5),
                stopped_early: true
            }
        );
        assert_eq!(epoch_events(&events).len(), 3);
    }

    #[test]
    fn an_invalid_config_or_batch_fails_with_a_message() {
        let tmp = tempfile::tempdir().unwrap();
        let (result, _) = run(
            setup(
                TrainConfig {
                    batch_size: 0,
                    ..config(1)
                },
                tmp.path(),
                "bad",
            ),
            &mut ToySource::new(),
        );
        assert!(result.unwrap_err().to_string().contains("batch_size"));

        let mut source = ToySource::new();
        source.train[0].targets.pop();
        let (result, _) = run(setup(config(1), tmp.path(), "bad2"), &mut source);
        assert!(result.unwrap_err().to_string().contains("target values"));
    }
}

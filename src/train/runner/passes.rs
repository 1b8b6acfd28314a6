//! One epoch's two passes over the data: training (forward, loss, backward, optimiser step per
//! batch, with throttled batch events) and validation on the plain device without autodiff. Both
//! stop at the next batch when the run is cancelled.

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType};

use super::steps::StepPoints;
use super::{batch_tensors, check_batch, BatchSource, CancelHandle, ImageClassifier};
use crate::train::config::OutputActivation;
use crate::train::error::{Error, Result};
use crate::train::event::{EventSink, TrainEvent};
use crate::train::loss::{activate, Loss};
use crate::train::metrics::row_hits;
use crate::train::optim::{Optim, Schedule};

/// Batch events at most this often (plus each epoch's last batch), so a fast model does not flood
/// the store and the browser.
const BATCH_EVENT_INTERVAL: Duration = Duration::from_millis(250);

/// What every step of a run shares.
pub(super) struct Step<'a> {
    pub device: &'a Device,
    /// The model's float format (inputs are cast to it; logits come back as f32).
    pub dtype: FloatDType,
    pub loss: &'a Loss,
    pub activation: OutputActivation,
    pub num_labels: usize,
    pub cancel: &'a CancelHandle,
    /// Epochs (from the first) in which only the classifier head learns.
    pub freeze_backbone_epochs: usize,
    /// The backbone's learning rate as a fraction of the head's.
    pub backbone_lr_factor: f64,
}

/// A pass's mean loss and the probabilities and targets it saw, for the epoch's metrics.
pub(super) struct Pass {
    /// Mean loss per image; NaN for a validation pass that saw no images.
    pub loss: f64,
    pub images: usize,
    pub probabilities: Vec<f32>,
    pub targets: Vec<f32>,
    /// The learning rate of the pass's last step (training only).
    pub lr: f64,
}

/// Trains one epoch (`epoch_index` from 0), booking every step in `points` (which reports the
/// step points); returns the updated model and the pass, or `None` when cancelled.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_epoch<M: ImageClassifier>(
    mut model: M,
    optim: &mut Optim,
    schedule: &Schedule,
    epoch_index: usize,
    data: &mut dyn BatchSource,
    step: &Step,
    points: &mut StepPoints,
    events: &mut dyn EventSink,
) -> Result<Option<(M, Pass)>> {
    let cancel = step.cancel;
    let epoch = epoch_index + 1;
    let of = data.train_batch_count();
    let mut pass = Pass {
        loss: 0.0,
        images: 0,
        probabilities: Vec::new(),
        targets: Vec::new(),
        lr: schedule.lr(epoch_index, 0.0),
    };
    let mut loss_sum = 0.0f64;
    let mut last_event = None::<Instant>;
    let mut batches = data.train_batches(epoch).peekable();
    let mut index = 0usize;
    loop {
        // Checked before the loader decodes the next batch, and again after (decoding can be slow).
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let Some(batch) = batches.next() else { break };
        if cancel.is_cancelled() {
            return Ok(None);
        }
        check_batch(&batch, step.num_labels)?;
        let step_start = Instant::now();
        pass.lr = schedule.lr(epoch_index, index as f64 / of.max(1) as f64);
        let (images, targets) = batch_tensors(&batch, step.device);
        let logits = model.forward(images.cast(step.dtype)).cast(FloatDType::F32);
        let loss = step.loss.compute(logits.clone(), targets);
        let loss_value: f32 = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return Err(Error::NonFinite {
                epoch,
                batch: index + 1,
                value: loss_value,
            });
        }
        let mut grads = loss.backward();
        let frozen = epoch <= step.freeze_backbone_epochs;
        let split = (frozen || step.backbone_lr_factor != 1.0)
            .then(|| model.take_head_grads(&mut grads))
            .flatten();
        model = match split {
            // The head first, then the backbone at its own rate (or not at all while frozen);
            // the optimiser keeps each parameter's state whichever step moves it.
            Some(head) => {
                let backbone = GradientsParams::from_grads(grads, &model);
                let model = optim.step(pass.lr, model, head);
                if frozen {
                    model
                } else {
                    optim.step(pass.lr * step.backbone_lr_factor, model, backbone)
                }
            }
            None => {
                let grads = GradientsParams::from_grads(grads, &model);
                optim.step(pass.lr, model, grads)
            }
        };

        let probs = activate(logits.detach(), step.activation).into_data();
        let first = pass.probabilities.len();
        pass.probabilities.extend(probs.iter::<f32>());
        pass.targets.extend_from_slice(&batch.targets);
        // From the outputs already copied to the host for the epoch's metrics: the step point
        // costs no extra device sync.
        let hits = row_hits(step.num_labels, &pass.probabilities[first..], &batch.targets);
        if let Some(point) = points.record(epoch, loss_value, batch.n, hits, pass.lr, Instant::now()) {
            events.emit(point);
        }
        loss_sum += loss_value as f64 * batch.n as f64;
        pass.images += batch.n;
        index += 1;

        let is_last = batches.peek().is_none();
        if is_last || last_event.is_none_or(|t| t.elapsed() >= BATCH_EVENT_INTERVAL) {
            last_event = Some(Instant::now());
            let secs = step_start.elapsed().as_secs_f32().max(1e-6);
            events.emit(TrainEvent::Batch {
                epoch,
                batch: index,
                of: of.max(index),
                loss: loss_value,
                images_per_sec: batch.n as f32 / secs,
                lr: pass.lr,
            });
        }
    }
    drop(batches);
    if pass.images == 0 {
        return Err(Error::Data(crate::data::Error::Invalid(format!(
            "epoch {epoch} had no training batches"
        ))));
    }
    pass.loss = loss_sum / pass.images as f64;
    Ok(Some((model, pass)))
}

/// Scores the validation batches with `model` on the plain device (no autodiff); `None` when
/// cancelled.
pub(super) fn validate_epoch<M: ImageClassifier>(
    model: &M,
    epoch: usize,
    data: &mut dyn BatchSource,
    step: &Step,
) -> Result<Option<Pass>> {
    let cancel = step.cancel;
    let valid_model = model.valid();
    let valid_device = step.device.clone().inner();
    let mut pass = Pass {
        loss: f64::NAN,
        images: 0,
        probabilities: Vec::new(),
        targets: Vec::new(),
        lr: 0.0,
    };
    let mut loss_sum = 0.0f64;
    for batch in data.val_batches() {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        check_batch(&batch, step.num_labels)?;
        let (images, targets) = batch_tensors(&batch, &valid_device);
        let logits = valid_model.forward(images.cast(step.dtype)).cast(FloatDType::F32);
        let loss: f32 = step.loss.compute(logits.clone(), targets).into_scalar::<f32>();
        pass.probabilities
            .extend(activate(logits, step.activation).into_data().iter::<f32>());
        pass.targets.extend_from_slice(&batch.targets);
        loss_sum += loss as f64 * batch.n as f64;
        pass.images += batch.n;
    }
    if pass.images > 0 {
        pass.loss = loss_sum / pass.images as f64;
        if !pass.loss.is_finite() {
            return Err(Error::NonFinite {
                epoch,
                batch: 0,
                value: pass.loss as f32,
            });
        }
    }
    Ok(Some(pass))
}

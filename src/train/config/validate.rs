//! Checking a training config: every value a run cannot use, all reported at once with its field.

use super::*;

impl TrainConfig {
    /// Checks every value a run cannot use; returns all problems at once.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.into(),
                message,
            })
        };

        self.check_data(&mut bad);
        self.check_model(&mut bad);
        self.check_augmentation(&mut bad);
        self.check_optimisation(&mut bad);
        self.check_loss(&mut bad);
        self.check_run(&mut bad);

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The label file, images, split and caching.
    fn check_data(&self, bad: &mut dyn FnMut(&str, String)) {
        if self.min_label_count == Some(0) {
            bad(
                "min_label_count",
                "is 0; give at least 1, or leave it out to keep every label".into(),
            );
        }
        if self.labels_include.len() > 32 {
            bad(
                "labels_include",
                format!("lists {} labels; at most 32 can be trained", self.labels_include.len()),
            );
        }
        for (i, label) in self.labels_include.iter().enumerate() {
            if label.trim().is_empty() || label.chars().count() > 80 {
                bad("labels_include", format!("label {label:?} must be 1 to 80 characters"));
            } else if self.labels_include[..i].iter().any(|l| l.eq_ignore_ascii_case(label)) {
                bad("labels_include", format!("'{label}' is listed twice"));
            }
        }
        // No label file means the built-in synthetic demo set.
        if let Some(name) = &self.dataset {
            if name.trim().is_empty() || name.chars().count() > 80 {
                bad(
                    "dataset",
                    "give the name of a registered data set (1 to 80 characters), or leave it out for the demo set"
                        .into(),
                );
            }
        }
        for (field, given, other) in [
            ("val_labels", &self.val_labels, &self.test_labels),
            ("test_labels", &self.test_labels, &self.val_labels),
        ] {
            let Some(given) = given else { continue };
            if given.as_os_str().is_empty() {
                bad(
                    field,
                    "give a label file path, or leave it out to split the training file".into(),
                );
            } else if other.is_none() {
                bad(
                    field,
                    "give both val_labels and test_labels (the split as its three files), or neither".into(),
                );
            } else if self.labels.is_none() {
                bad(field, "needs labels (the training file of the same data set)".into());
            }
        }
        if self.labels.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            bad(
                "labels",
                "give a label file path, or leave it out to use the demo data set".into(),
            );
        }
        for (field, v) in [
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                bad(
                    field,
                    format!("is {v}; use a fraction from 0 up to (not including) 1, e.g. 0.1"),
                );
            }
        }
        if self.split != SplitStrategy::Official {
            let sum = self.val_fraction + self.test_fraction;
            if sum.is_finite() && sum >= 1.0 {
                bad(
                    "test_fraction",
                    format!("validation + test fractions are {sum}, leaving nothing to train on; keep the sum below 1"),
                );
            }
        }
        if self.split == SplitStrategy::Balanced && self.per_class.is_none() {
            bad(
                "per_class",
                "the balanced split needs a number of images per class".into(),
            );
        }
        if self.per_class == Some(0) {
            bad("per_class", "must be at least 1".into());
        }
        if self.max_images == Some(0) {
            bad(
                "max_images",
                "must be at least 1 (leave it empty to use every image)".into(),
            );
        }
        if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&self.image_size) {
            bad(
                "image_size",
                format!(
                    "is {}; use {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels (224 is the usual choice)",
                    self.image_size
                ),
            );
        }
    }

    /// Architecture, width, image size and normalisation, and the weights to start from.
    fn check_model(&self, bad: &mut dyn FnMut(&str, String)) {
        if let Some(weights) = &self.init_weights {
            if weights.as_os_str().is_empty() {
                bad(
                    "init_weights",
                    "give the path of a .pth/.pt or .safetensors file, or leave it out to start from random weights"
                        .into(),
                );
            } else if !matches!(
                weights.extension().and_then(|e| e.to_str()),
                Some("pth" | "pt" | "safetensors")
            ) {
                bad(
                    "init_weights",
                    "must be a PyTorch file: .pth / .pt (saved by torch.save) or .safetensors".into(),
                );
            } else if !weights.is_file() {
                bad(
                    "init_weights",
                    format!(
                        "{}: no such file (paths are on the machine running cxr8)",
                        weights.display().to_string().chars().take(200).collect::<String>()
                    ),
                );
            } else if let Err(problem) = crate::model::torchvision::check_spec(&self.model_spec()) {
                bad("init_weights", problem.to_string());
            }
        }
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= MAX_WIDTH) {
            bad(
                "width",
                format!("is {}; use a multiplier above 0 and at most {MAX_WIDTH}", self.width),
            );
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            bad(
                "dropout",
                format!("is {}; use a probability from 0 up to (not including) 1", self.dropout),
            );
        }
    }

    /// Augmentation strengths.
    fn check_augmentation(&self, bad: &mut dyn FnMut(&str, String)) {
        let aug = &self.augment;
        for (field, v, max) in [
            ("aug_rotate", aug.rotate_deg, 180.0),
            ("aug_translate", aug.translate, 0.5),
            ("aug_scale", aug.scale, 0.5),
            ("aug_brightness", aug.brightness, 1.0),
            ("aug_contrast", aug.contrast, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                bad(field, format!("is {v}; use 0 to {max}"));
            }
        }
    }

    /// Optimiser, learning rate (the backbone's share of it, a frozen start), schedule and batch.
    fn check_optimisation(&self, bad: &mut dyn FnMut(&str, String)) {
        if !(self.backbone_lr_factor.is_finite() && self.backbone_lr_factor > 0.0 && self.backbone_lr_factor <= 10.0) {
            bad(
                "backbone_lr_factor",
                format!(
                    "must be above 0 and at most 10 (0.1 trains the backbone 10× slower than the head), not {}",
                    self.backbone_lr_factor
                ),
            );
        }
        if self.freeze_backbone_epochs > self.epochs {
            bad(
                "freeze_backbone_epochs",
                format!(
                    "{} is more than the run's {} epochs: the backbone would never train",
                    self.freeze_backbone_epochs, self.epochs
                ),
            );
        }
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            bad("epochs", format!("is {}; use 1 to {MAX_EPOCHS}", self.epochs));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            bad(
                "batch_size",
                format!("is {}; use 1 to {MAX_BATCH_SIZE}", self.batch_size),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bad(
                "lr",
                format!(
                    "is {}; the learning rate must be a positive number, e.g. 0.001",
                    self.lr
                ),
            );
        } else if self.lr > 10.0 {
            bad(
                "lr",
                format!("is {}; rates above 10 always diverge, try 0.001", self.lr),
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            bad(
                "momentum",
                format!("is {}; use 0 up to (not including) 1, e.g. 0.9", self.momentum),
            );
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            bad(
                "nesterov",
                "Nesterov momentum needs the sgd optimizer with momentum above 0".into(),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            bad(
                "weight_decay",
                format!("is {}; use 0 up to 1, typically 1e-4", self.weight_decay),
            );
        }
        for (field, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                bad(field, format!("is {v}; use 0 up to (not including) 1"));
            }
        }
        if self.epochs > 0 && self.warmup_epochs >= self.epochs {
            bad(
                "warmup_epochs",
                format!(
                    "is {} but the run has {} epochs; warm up for fewer epochs",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        if self.step_size == 0 {
            bad("step_size", "must be at least 1 epoch".into());
        }
        if !(self.step_gamma.is_finite() && self.step_gamma > 0.0 && self.step_gamma <= 1.0) {
            bad(
                "step_gamma",
                format!("is {}; use a multiplier above 0 and at most 1", self.step_gamma),
            );
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0) {
            bad("min_lr", format!("is {}; use 0 or a positive rate", self.min_lr));
        } else if self.schedule == ScheduleKind::Cosine && self.lr.is_finite() && self.min_lr >= self.lr {
            bad(
                "min_lr",
                format!("is {} but must be below the learning rate {}", self.min_lr, self.lr),
            );
        }
        if !(self.plateau_factor.is_finite() && self.plateau_factor > 0.0 && self.plateau_factor < 1.0) {
            bad(
                "plateau_factor",
                format!("is {}; use a multiplier between 0 and 1", self.plateau_factor),
            );
        }
        if let Some(clip) = self.grad_clip {
            if !(clip.is_finite() && clip > 0.0) {
                bad(
                    "grad_clip",
                    format!("is {clip}; use a positive norm, e.g. 1.0, or leave it empty"),
                );
            }
        }
    }

    /// Loss function and its parameters.
    fn check_loss(&self, bad: &mut dyn FnMut(&str, String)) {
        if !(self.focal_gamma.is_finite() && (0.0..=10.0).contains(&self.focal_gamma)) {
            bad(
                "focal_gamma",
                format!("is {}; use 0 to 10 (2 is usual)", self.focal_gamma),
            );
        }
        if let Some(alpha) = self.focal_alpha {
            if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
                bad("focal_alpha", format!("is {alpha}; use 0 to 1, or leave it empty"));
            }
        }
        match (self.loss, self.output_activation) {
            (LossKind::Bce | LossKind::Focal, Some(OutputActivation::Softmax)) => bad(
                "output_activation",
                "BCE and focal loss work on per-label sigmoids; use ce for softmax, or mse/mae".into(),
            ),
            (LossKind::Ce, Some(OutputActivation::Sigmoid)) => bad(
                "output_activation",
                "cross-entropy works on a softmax; use bce for per-label sigmoids".into(),
            ),
            _ => {}
        }
    }

    /// Epochs, early stopping, device, name and tags.
    fn check_run(&self, bad: &mut dyn FnMut(&str, String)) {
        if self.early_stopping == Some(0) {
            bad(
                "early_stopping",
                "patience must be at least 1 epoch (leave it empty to never stop early)".into(),
            );
        }
        if !(1..=super::MAX_STEP_POINTS).contains(&self.step_points) {
            bad(
                "step_points",
                format!(
                    "must be from 1 to {} (the most step-level points a run stores; default {})",
                    super::MAX_STEP_POINTS,
                    super::DEFAULT_STEP_POINTS
                ),
            );
        }
        if self.threads == Some(0) {
            bad(
                "threads",
                "must be at least 1 (leave it empty to use every core)".into(),
            );
        }
        if let Some(name) = &self.name {
            if name.chars().count() > 100 {
                bad("name", "is longer than 100 characters".into());
            }
        }
        for tag in &self.tags {
            if tag.trim().is_empty() || tag.chars().count() > 40 || tag.contains(',') {
                bad("tags", format!("tag {tag:?} must be 1 to 40 characters without commas"));
            }
        }
    }
}

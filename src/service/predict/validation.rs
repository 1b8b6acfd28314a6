//! A run's predictions on the first images of its own validation split, exactly as its validation
//! loader saw them: the split is recomputed from the label file with the run's seed and options
//! (deterministic), and the pixels come from the run's cache (or the image files themselves).

use image::GrayImage;

use super::{overlay, predict, uploads, GradCamSummary, ModelKey, Predictions, Result};
use crate::data::cache::{self, Cache};
use crate::data::images::{self, ImageIndex};
use crate::store::Run;
use crate::train::job;
use crate::train::predict::Inference;

/// Validation images shown per run.
pub const VALIDATION_IMAGES: usize = 4;

/// One run's validation images with their predictions, as computed for its best checkpoint.
pub struct ValidationSet {
    pub items: Vec<ValidationImage>,
    /// Why there are no items, when there are none.
    pub note: String,
}

pub struct ValidationImage {
    /// The image's file name in the label file.
    pub name: String,
    /// Its labels in the label file.
    pub truth: Vec<String>,
    /// Its address as a stored upload.
    pub sha: String,
    pub image_png: Vec<u8>,
    /// Grad-CAM of the most probable label whose map is not empty.
    pub overlay_png: Vec<u8>,
    /// What that Grad-CAM found, and the labels passed over for it.
    pub gradcam: GradCamSummary,
    /// (label, probability, threshold), most probable first.
    pub ranked: Vec<(String, f32, f32)>,
}

impl Predictions {
    /// Predicts the run's first validation images with the checkpoint `key`. Blocking.
    pub(super) fn compute_validation(&self, run: &Run, key: &ModelKey) -> Result<ValidationSet> {
        let loaded = self.load_model(key, run)?;
        let model: &dyn Inference = loaded.as_ref();
        let chosen = match self.validation_images(model) {
            Ok(chosen) => chosen,
            Err(why) => {
                return Ok(ValidationSet {
                    items: Vec::new(),
                    note: format!("the run's validation images cannot be found: {why}"),
                })
            }
        };
        let labels = model.labels().to_vec();
        let mut items = Vec::new();
        for (name, targets, gray) in chosen {
            let prediction = predict(model, &gray)?;
            let (sha, image_png) = uploads::store_upload(&self.uploads_dir(), &gray)?;
            let search = self.gradcam_search(key, model, &sha, &gray, &prediction.order)?;
            let overlay_png = overlay(&gray, &search.chosen().1);
            let truth: Vec<String> = (0..labels.len().min(32))
                .filter(|i| targets & (1 << i) != 0)
                .map(|i| labels[i].clone())
                .collect();
            items.push(ValidationImage {
                name,
                truth,
                sha,
                image_png,
                overlay_png,
                gradcam: GradCamSummary::of(&search, &labels),
                ranked: prediction.ranked,
            });
        }
        let note = if items.is_empty() {
            "the run's validation split has no images in its cache".into()
        } else {
            String::new()
        };
        Ok(ValidationSet { items, note })
    }

    /// (file name, label bits, image at the model's input size) of the first validation images.
    fn validation_images(&self, model: &dyn Inference) -> Result<Vec<(String, u32, GrayImage)>> {
        let config = &model.state().config;
        let paths = self.job_paths();
        let (_, images_dir) = job::dataset_paths(config, &paths)?;
        let (mut table, split) = job::load_split(config, &paths)?;
        let size = config.image_size;
        // Found from the file as training read it, before its labels are narrowed below.
        let cache_path = cache::path_for(paths.cache_dir(), &table, size);
        // Label bits in the model's output order: a run may train on fewer labels, or with
        // "No Finding" made one.
        table.restrict_to(model.labels())?;
        let share = job::max_images_share(config, &split, split.val.len()).unwrap_or(usize::MAX);
        let wanted = share.min(VALIDATION_IMAGES);
        let records = split.val.iter().map(|&row| &table.records[row]);
        if cache_path.is_file() {
            let cache = Cache::open(&cache_path)?;
            return Ok(records
                .filter_map(|r| cache.index_of(&r.image).map(|i| (r, i)))
                .take(wanted)
                .filter_map(|(r, i)| {
                    GrayImage::from_raw(size, size, cache.image(i).to_vec()).map(|g| (r.image.clone(), r.targets, g))
                })
                .collect());
        }
        // No cache (trained with another data folder): read the files themselves.
        let index = ImageIndex::scan(&images_dir)?;
        Ok(records
            .filter_map(|r| index.get(&r.image).map(|p| (r, p.to_path_buf())))
            .take(wanted)
            .filter_map(|(r, path)| {
                images::load_resized(&path, size)
                    .ok()
                    .map(|g| (r.image.clone(), r.targets, g))
            })
            .collect())
    }
}

//! `cxr8 predict`: per-label probabilities for X-ray images from a trained run's checkpoint, with
//! optional Grad-CAM overlays; also the checkpoint flags `cxr8 eval --checkpoint` shares.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::GrayImage;
use serde::Serialize;

use crate::data::images;
use crate::train::backend::DeviceChoice;
use crate::train::checkpoint::Slot;
use crate::train::gradcam;
use crate::train::predict::{self, CheckpointRef, Inference};

/// Which checkpoint to load and where to run it.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointArgs {
    /// Folder holding one checkpoint folder per run (where `cxr8 train` wrote them).
    #[arg(long, default_value = "ckpts", value_name = "DIR")]
    pub ckpt_dir: PathBuf,
    /// Use the last saved epoch instead of the best one.
    #[arg(long)]
    pub last: bool,
    /// Where to run the model: the CPU (default), or CUDA when a usable GPU is found.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

impl CheckpointArgs {
    /// Loads the model `spec` (a run id, run folder or epoch folder) names.
    pub fn load(&self, spec: &str) -> anyhow::Result<Box<dyn Inference>> {
        let slot = if self.last { Slot::Last } else { Slot::Best };
        let ckpt = CheckpointRef::locate(spec, &self.ckpt_dir, slot)?;
        let (model, backend) =
            predict::load_on(&ckpt, self.device).with_context(|| format!("loading checkpoint {spec}"))?;
        let state = model.state();
        tracing::info!(
            "model: run {} epoch {} ({}, {} px) from {} on {backend}",
            state.run_id,
            state.epoch,
            state.config.model_spec().architecture,
            model.image_size(),
            ckpt.epoch_dir.display()
        );
        Ok(model)
    }
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The run to use: its id (looked up under --ckpt-dir), its folder, or one epoch folder.
    #[arg(long, value_name = "RUN_ID|PATH")]
    pub checkpoint: String,
    #[command(flatten)]
    pub model: CheckpointArgs,
    /// Write a Grad-CAM overlay PNG per image into this folder (at the image's own resolution;
    /// non-square images are centre-cropped to the square the model sees).
    #[arg(long, value_name = "DIR")]
    pub heatmap: Option<PathBuf>,
    /// Label the heat maps explain (default: each image's most probable label whose map is not
    /// empty, i.e. where some region raises its score).
    #[arg(long, value_name = "L", requires = "heatmap")]
    pub label: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// PNG or JPEG X-ray images.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Serialize)]
struct LabelJson<'a> {
    label: &'a str,
    probability: f32,
    threshold: f32,
    positive: bool,
}

#[derive(Serialize)]
struct ImageJson<'a> {
    image: &'a Path,
    predictions: Vec<LabelJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap_label: Option<&'a str>,
    /// No region raises the score for `heatmap_label`: the PNG is the image alone, hatched.
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap_empty: Option<bool>,
    /// The map's raw peak before it was scaled to [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap_peak: Option<f32>,
    /// More probable labels passed over because their maps are empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    heatmap_skipped: Vec<&'a str>,
    /// Labels passed over, or that the map is empty, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap_note: Option<String>,
}

/// The heat map written for one image.
struct Written<'a> {
    file: PathBuf,
    label: &'a str,
    empty: bool,
    peak: f32,
    skipped: Vec<&'a str>,
    note: Option<String>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    // Read every image first, so one bad file does not waste the model's time on the others.
    let mut loaded = Vec::new();
    let mut unreadable = Vec::new();
    for path in &args.images {
        match images::load_gray(path) {
            Ok(image) => loaded.push(image),
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    if !unreadable.is_empty() {
        anyhow::bail!(
            "{} of {} images cannot be read (PNG or JPEG expected):\n  {}",
            unreadable.len(),
            args.images.len(),
            unreadable.join("\n  ")
        );
    }
    let model = args.model.load(&args.checkpoint)?;
    let chosen_label = args.label.as_deref().map(|l| model.label_index(l)).transpose()?;
    if let Some(dir) = &args.heatmap {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the heat map folder {}", dir.display()))?;
    }

    let mut reports = Vec::new();
    let mut out = std::io::stdout().lock();
    for (path, image) in args.images.iter().zip(&loaded) {
        let probs = model
            .predict(image)
            .with_context(|| format!("predicting {}", path.display()))?;
        let thresholds = model.thresholds();
        let probabilities: Vec<f32> = probs.iter().map(|(_, p)| *p).collect();
        let order = predict::probability_order(&probabilities);

        let mut written = None;
        if let Some(dir) = &args.heatmap {
            let labels = model.labels();
            let candidates = chosen_label.map_or_else(|| order.clone(), |label| vec![label]);
            let search = model
                .gradcam_search(image, &candidates)
                .with_context(|| format!("Grad-CAM for {}", path.display()))?;
            let (label, heat) = search.chosen();
            let file = dir.join(heatmap_name(path, &labels[*label]));
            let png = gradcam::overlay_png(&centre_square(image), heat);
            crate::data::write_atomically(&file, &png)?;
            written = Some(Written {
                file,
                label: labels[*label].as_str(),
                empty: heat.empty,
                peak: heat.peak,
                skipped: search.skipped().iter().map(|&i| labels[i].as_str()).collect(),
                note: search.note(labels),
            });
        }

        if args.json {
            reports.push(ImageJson {
                image: path,
                predictions: order
                    .iter()
                    .map(|&i| LabelJson {
                        label: model.labels()[i].as_str(),
                        probability: probs[i].1,
                        threshold: thresholds[i],
                        positive: probs[i].1 >= thresholds[i],
                    })
                    .collect(),
                heatmap_label: written.as_ref().map(|w| w.label),
                heatmap_empty: written.as_ref().map(|w| w.empty),
                heatmap_peak: written.as_ref().map(|w| w.peak),
                heatmap_note: written.as_ref().and_then(|w| w.note.clone()),
                heatmap_skipped: written.as_ref().map(|w| w.skipped.clone()).unwrap_or_default(),
                heatmap: written.map(|w| w.file),
            });
        } else {
            writeln!(out, "{}", path.display())?;
            let width = model.labels().iter().map(|l| l.len()).max().unwrap_or(0).max(5);
            writeln!(
                out,
                "    {:<width$}  {:>11}  {:>9}",
                "Label", "probability", "threshold"
            )?;
            for &i in &order {
                let mark = if probs[i].1 >= thresholds[i] { '*' } else { ' ' };
                writeln!(
                    out,
                    "  {mark} {:<width$}  {:>11.4}  {:>9.4}",
                    model.labels()[i],
                    probs[i].1,
                    thresholds[i]
                )?;
            }
            if let Some(w) = &written {
                let empty = if w.empty { " (empty map)" } else { "" };
                writeln!(out, "    Grad-CAM for {}{empty}: {}", w.label, w.file.display())?;
                if let Some(note) = &w.note {
                    writeln!(out, "    {note}")?;
                }
            }
            writeln!(out)?;
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "* probability at or above the run's validation-tuned threshold (max F1)"
        )?;
    }
    Ok(())
}

/// `<image stem>.<label>.gradcam.png`, with characters unsafe in file names replaced.
fn heatmap_name(image: &Path, label: &str) -> String {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}.{label}.gradcam.png")
}

/// The centred square the model sees (the whole image when it is square already).
fn centre_square(image: &GrayImage) -> GrayImage {
    let (w, h) = image.dimensions();
    let side = w.min(h);
    if w == h {
        return image.clone();
    }
    image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heatmap_names_are_safe_file_names() {
        assert_eq!(
            heatmap_name(Path::new("/x/00000001_000.png"), "Pleural_Thickening"),
            "00000001_000.Pleural_Thickening.gradcam.png"
        );
        assert_eq!(
            heatmap_name(Path::new("a.jpg"), "No Finding/x"),
            "a.No_Finding_x.gradcam.png"
        );
    }

    #[test]
    fn wide_images_are_cropped_to_their_centre() {
        let mut image = GrayImage::new(6, 2);
        image.put_pixel(2, 0, image::Luma([9]));
        let square = centre_square(&image);
        assert_eq!(square.dimensions(), (2, 2));
        assert_eq!(square.get_pixel(0, 0).0, [9]);
    }
}

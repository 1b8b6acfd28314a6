//! The synthetic demo data set: chest-radiograph-like phantoms whose findings follow NIH's label
//! distribution, written in exactly NIH's layout (`Data_Entry_2017.csv` + `images/*.png`) so the
//! real-data code path reads it. Also `generator.json` (every image's drawing parameters) and a
//! README saying the images are synthetic. Output depends only on the config, never on threads.

pub mod phantom;
pub mod stats;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Error, LabelTable, Result};
use phantom::{Anatomy, Lesion, Phantom};
use stats::NihStats;

/// NIH's label file name; the rest of cxr8 looks for it.
pub const LABEL_FILE: &str = "Data_Entry_2017.csv";
/// Every image's generator parameters.
pub const GENERATOR_FILE: &str = "generator.json";
pub const IMAGES_DIR: &str = "images";
const README_FILE: &str = "README.txt";
/// NIH's header, including its commas inside brackets (9 names, 11 fields per row).
pub const NIH_HEADER: &str = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,\
View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]";
/// Nominal detector field (mm) used to state a pixel spacing for the synthetic images.
const FIELD_MM: f64 = 360.0;
/// A patient may not dominate a small set: NIH's largest has 184 images.
const MAX_IMAGES_PER_PATIENT: u32 = 50;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    pub out: PathBuf,
    pub images: usize,
    /// Width and height in pixels.
    pub size: u32,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            out: PathBuf::from("data/demo"),
            images: 3000,
            size: 128,
            seed: 42,
        }
    }
}

impl DemoConfig {
    pub fn validate(&self) -> Result<()> {
        if self.images == 0 || self.images > 1_000_000 {
            return Err(Error::Invalid(format!(
                "demo images must be between 1 and 1000000, got {}",
                self.images
            )));
        }
        if !(32..=1024).contains(&self.size) {
            return Err(Error::Invalid(format!(
                "demo image size must be between 32 and 1024 pixels, got {}",
                self.size
            )));
        }
        Ok(())
    }
}

/// What a call produced (or found, when `ensure` had nothing to do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoReport {
    pub out: PathBuf,
    pub label_file: PathBuf,
    pub images: usize,
    pub patients: usize,
    /// Images per label (NIH order) plus "No Finding".
    pub label_counts: Vec<(String, usize)>,
    /// False when `ensure` found a complete set and wrote nothing.
    pub generated: bool,
}

/// One image's row and drawing parameters, as stored in `generator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub image: String,
    pub patient: u32,
    pub follow_up: u32,
    pub age: u16,
    pub male: bool,
    pub view: String,
    /// NIH labels, sorted by name; empty = "No Finding".
    pub findings: Vec<String>,
    pub phantom: Phantom,
}

impl ImageSpec {
    pub fn finding_labels(&self) -> String {
        if self.findings.is_empty() {
            super::labels::NO_FINDING.to_string()
        } else {
            self.findings.join("|")
        }
    }
}

/// `generator.json`: the config and every image's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorFile {
    pub generator: String,
    pub seed: u64,
    pub size: u32,
    pub images: Vec<ImageSpec>,
}

/// Draws patients, labels and phantom parameters for every image. Sequential and cheap; the
/// per-image RNG streams keep it independent of how rendering is scheduled.
pub fn plan(config: &DemoConfig) -> Vec<ImageSpec> {
    let stats = NihStats::embedded();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let cap = MAX_IMAGES_PER_PATIENT.min((config.images as u32 / 20).max(1));
    let mut specs = Vec::with_capacity(config.images);
    let mut patient = 0u32;
    while specs.len() < config.images {
        patient += 1;
        let count = (*stats.images_per_patient.sample(&mut rng))
            .min(cap)
            .min((config.images - specs.len()) as u32);
        let male = *stats.male.sample(&mut rng);
        let decade = *stats.age_decade.sample(&mut rng);
        let mut age = (decade * 10 + rng.random_range(0..10)).clamp(1, 95) as u16;
        let body = Anatomy::sample(&mut rng, !male);
        let mut findings: Vec<String> = stats.draw_findings(&mut rng);
        for follow_up in 0..count {
            // Follow-ups often keep the previous findings; repeating with probability 1/2 keeps
            // each image's marginal distribution equal to NIH's.
            if follow_up > 0 {
                if rng.random_bool(0.5) {
                    findings = stats.draw_findings(&mut rng);
                }
                if rng.random_bool(0.3) {
                    age = (age + 1).min(95);
                }
            }
            let pa = *stats.pa_view.sample(&mut rng);
            let index = specs.len() as u64;
            let mut image_rng = ChaCha8Rng::seed_from_u64(config.seed);
            image_rng.set_stream(index + 1);
            let anatomy = body.for_image(&mut image_rng, !pa);
            let lesions = findings
                .iter()
                .filter_map(|label| Lesion::sample(label, &anatomy, &mut image_rng))
                .collect();
            specs.push(ImageSpec {
                image: format!("{patient:08}_{follow_up:03}.png"),
                patient,
                follow_up,
                age,
                male,
                view: if pa { "PA" } else { "AP" }.to_string(),
                findings: findings.clone(),
                phantom: Phantom {
                    anatomy,
                    lesions,
                    noise_seed: image_rng.random(),
                },
            });
        }
    }
    specs
}

/// NIH-format label file text for `specs`.
pub fn label_file_text(specs: &[ImageSpec], size: u32) -> String {
    let spacing = FIELD_MM / size as f64;
    let mut text = String::with_capacity(80 * (specs.len() + 1));
    text.push_str(NIH_HEADER);
    text.push('\n');
    for s in specs {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{size},{size},{spacing:.3},{spacing:.3}\n",
            s.image,
            s.finding_labels(),
            s.follow_up,
            s.patient,
            s.age,
            if s.male { "M" } else { "F" },
            s.view
        ));
    }
    text
}

/// PNG bytes of one 8-bit gray image.
pub fn encode_png(pixels: &[u8], size: u32) -> std::result::Result<Vec<u8>, image::ImageError> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(pixels, size, size, image::ExtendedColorType::L8)?;
    Ok(bytes)
}

fn readme(config: &DemoConfig, patients: usize) -> String {
    format!(
        "cxr8 demo data set: SYNTHETIC images, not real radiographs and not for any clinical use.\n\
         \n\
         {images} images of {patients} made-up patients, {size}x{size} pixels, seed {seed}, generated by\n\
         `cxr8 demo`. Each image is a drawn chest phantom (lungs, heart, mediastinum, diaphragm, ribs,\n\
         clavicles, soft tissue, noise); each finding is a drawn pattern. The layout copies NIH\n\
         ChestX-ray14 so the same code reads both: {label_file} (NIH's columns) and {images_dir}/.\n\
         {generator} lists every image's drawing parameters.\n\
         \n\
         Finding combinations, images per patient, age, sex and view are sampled from the statistics\n\
         of the real NIH label file: Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8:\n\
         Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised Classification and\n\
         Localization of Common Thorax Diseases. IEEE CVPR 2017. Rare findings are enriched: {enriched}%\n\
         of the images take a combination that contains a finding chosen uniformly, so every finding\n\
         has enough images to learn and to measure (NIH has only 0.2% Hernia).\n",
        images = config.images,
        size = config.size,
        seed = config.seed,
        label_file = LABEL_FILE,
        images_dir = IMAGES_DIR,
        generator = GENERATOR_FILE,
        enriched = (stats::ENRICHED_SHARE * 100.0).round(),
    )
}

/// Generates the data set into `config.out`, replacing an earlier demo set there. Everything is
/// written into a hidden sibling folder first and renamed into place at the end, so a crash never
/// leaves a half-written set under the real name.
pub fn generate(config: &DemoConfig) -> Result<DemoReport> {
    config.validate()?;
    let out = &config.out;
    if out.exists() && !is_demo_or_empty(out) {
        return Err(Error::Invalid(format!(
            "{} exists and is not a cxr8 demo data set (no {GENERATOR_FILE}); refusing to replace it: \
             choose another output folder",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a folder name", out.display())))?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = write_set(config, &tmp).and_then(|report| {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        if out.exists() {
            std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let mut report = result?;
    report.out = out.clone();
    report.label_file = out.join(LABEL_FILE);
    Ok(report)
}

fn is_demo_or_empty(dir: &Path) -> bool {
    dir.join(GENERATOR_FILE).is_file() || std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

fn write_set(config: &DemoConfig, dir: &Path) -> Result<DemoReport> {
    let specs = plan(config);
    let images_dir = dir.join(IMAGES_DIR);
    std::fs::create_dir_all(&images_dir).map_err(|e| Error::io(&images_dir, e))?;
    specs.par_iter().try_for_each(|spec| {
        let path = images_dir.join(&spec.image);
        let pixels = phantom::render(&spec.phantom, config.size);
        let bytes = encode_png(&pixels, config.size).map_err(|e| Error::Image {
            path: path.clone(),
            message: format!("could not encode PNG: {e}"),
        })?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    })?;
    let patients = specs.last().map(|s| s.patient as usize).unwrap_or(0);
    let generator = GeneratorFile {
        generator: format!("cxr8 {} demo", env!("CARGO_PKG_VERSION")),
        seed: config.seed,
        size: config.size,
        images: specs,
    };
    let json = serde_json::to_vec(&generator).map_err(|e| Error::Invalid(format!("generator.json: {e}")))?;
    std::fs::write(dir.join(GENERATOR_FILE), json).map_err(|e| Error::io(dir.join(GENERATOR_FILE), e))?;
    std::fs::write(dir.join(README_FILE), readme(config, patients)).map_err(|e| Error::io(dir.join(README_FILE), e))?;
    // The label file last: its presence is what `ensure` checks first.
    let label_path = dir.join(LABEL_FILE);
    std::fs::write(&label_path, label_file_text(&generator.images, config.size))
        .map_err(|e| Error::io(&label_path, e))?;
    let table = LabelTable::load(&label_path)?;
    Ok(DemoReport {
        out: dir.to_path_buf(),
        label_file: label_path,
        images: table.len(),
        patients,
        label_counts: table.label_counts(),
        generated: true,
    })
}

/// The report for a complete demo set at `out`, or `None` when anything is missing: the label
/// file does not parse, an image it lists is absent, or the generator/README files are gone.
pub fn check_complete(out: &Path) -> Option<DemoReport> {
    if !out.join(GENERATOR_FILE).is_file() || !out.join(README_FILE).is_file() {
        return None;
    }
    let label_file = out.join(LABEL_FILE);
    let table = LabelTable::load(&label_file).ok()?;
    let images = out.join(IMAGES_DIR);
    if !table.records.iter().all(|r| images.join(&r.image).is_file()) {
        return None;
    }
    let mut patients: Vec<&str> = table.records.iter().map(|r| r.patient.as_str()).collect();
    patients.sort_unstable();
    patients.dedup();
    Some(DemoReport {
        out: out.to_path_buf(),
        label_file,
        images: table.len(),
        patients: patients.len(),
        label_counts: table.label_counts(),
        generated: false,
    })
}

/// Generates the default demo set at `out` unless a complete one is already there.
pub fn ensure(out: impl AsRef<Path>) -> Result<DemoReport> {
    ensure_with(&DemoConfig {
        out: out.as_ref().to_path_buf(),
        ..DemoConfig::default()
    })
}

/// As [`ensure`], with a chosen config (used only when generating).
pub fn ensure_with(config: &DemoConfig) -> Result<DemoReport> {
    match check_complete(&config.out) {
        Some(report) => Ok(report),
        None => generate(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> DemoConfig {
        DemoConfig {
            out: PathBuf::new(),
            images: 200,
            size: 64,
            seed,
        }
    }

    #[test]
    fn plan_is_reproducible_and_seed_dependent() {
        assert_eq!(plan(&small(1)), plan(&small(1)));
        assert_ne!(plan(&small(1)), plan(&small(2)));
    }

    #[test]
    fn plan_names_images_like_nih_and_keeps_patients_together() {
        let specs = plan(&small(5));
        assert_eq!(specs.len(), 200);
        for (i, s) in specs.iter().enumerate() {
            assert_eq!(s.image, format!("{:08}_{:03}.png", s.patient, s.follow_up));
            let labels: Vec<&str> = s.phantom.lesions.iter().map(|l| l.label()).collect();
            assert_eq!(labels, s.findings, "lesions drawn = labels written, image {i}");
            if i > 0 && specs[i - 1].patient == s.patient {
                assert_eq!(specs[i - 1].follow_up + 1, s.follow_up);
                assert_eq!(specs[i - 1].male, s.male);
            }
        }
        assert!(specs.last().unwrap().patient < 200, "several images per patient");
    }

    #[test]
    fn label_file_has_nih_header_and_eleven_fields() {
        let specs = plan(&small(3));
        let text = label_file_text(&specs, 64);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(NIH_HEADER));
        for line in lines {
            assert_eq!(line.split(',').count(), 11, "{line}");
        }
    }

    #[test]
    fn bad_config_is_refused_with_a_message() {
        let err = DemoConfig { size: 8, ..small(1) }.validate().unwrap_err();
        assert!(err.to_string().contains("between 32 and 1024"), "{err}");
        let err = DemoConfig { images: 0, ..small(1) }.validate().unwrap_err();
        assert!(err.to_string().contains("images"), "{err}");
    }
}

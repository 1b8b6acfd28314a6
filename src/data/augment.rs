//! On-the-fly augmentation settings (applied by the loader to training batches only).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Defaults are mild: chest films vary a little in positioning and exposure, and the heart is on
/// the patient's left, so horizontal flips are off unless asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AugmentConfig {
    /// Enable augmentation of training batches.
    #[arg(long = "augment", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Random horizontal flips (anatomy is not symmetric: off by default).
    #[arg(long = "aug-hflip", default_value_t = false, action = clap::ArgAction::Set)]
    pub hflip: bool,
    /// Maximum rotation, degrees.
    #[arg(long = "aug-rotate", default_value_t = 5.0)]
    pub rotate_deg: f32,
    /// Maximum translation, fraction of the image side.
    #[arg(long = "aug-translate", default_value_t = 0.05)]
    pub translate: f32,
    /// Maximum relative zoom in or out.
    #[arg(long = "aug-scale", default_value_t = 0.05)]
    pub scale: f32,
    /// Maximum brightness shift, fraction of full range.
    #[arg(long = "aug-brightness", default_value_t = 0.1)]
    pub brightness: f32,
    /// Maximum relative contrast change.
    #[arg(long = "aug-contrast", default_value_t = 0.1)]
    pub contrast: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            hflip: false,
            rotate_deg: 5.0,
            translate: 0.05,
            scale: 0.05,
            brightness: 0.1,
            contrast: 0.1,
        }
    }
}

/// An augmentation strength outside what the transform allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--{flag} must be between 0 and {max}, got {value}")]
pub struct RangeError {
    /// The command-line flag that sets it.
    pub flag: &'static str,
    pub value: f32,
    pub max: f32,
}

impl AugmentConfig {
    /// Settings that leave every image as it is (evaluation, or `--augment false`).
    pub fn disabled() -> Self {
        AugmentConfig {
            enabled: false,
            ..AugmentConfig::default()
        }
    }

    /// Checks the ranges; the error names the flag to change.
    pub fn validate(&self) -> Result<(), RangeError> {
        let finite_in = |flag: &'static str, value: f32, max: f32| {
            if value.is_finite() && (0.0..=max).contains(&value) {
                Ok(())
            } else {
                Err(RangeError { flag, value, max })
            }
        };
        finite_in("aug-rotate", self.rotate_deg, 180.0)?;
        finite_in("aug-translate", self.translate, 0.5)?;
        // A zoom factor of 1 - scale must stay positive, and contrast likewise.
        finite_in("aug-scale", self.scale, 0.9)?;
        finite_in("aug-brightness", self.brightness, 1.0)?;
        finite_in("aug-contrast", self.contrast, 0.9)?;
        Ok(())
    }

    /// Draws one image's augmentation; identity when disabled. Ranges are uniform and symmetric.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, size: usize) -> AugmentParams {
        if !self.enabled {
            return AugmentParams::IDENTITY;
        }
        let side = size as f32;
        AugmentParams {
            rotate_deg: symmetric(rng, self.rotate_deg),
            zoom: 1.0 + symmetric(rng, self.scale),
            shift_x: symmetric(rng, self.translate) * side,
            shift_y: symmetric(rng, self.translate) * side,
            hflip: self.hflip && rng.random_bool(0.5),
            brightness: symmetric(rng, self.brightness),
            contrast: 1.0 + symmetric(rng, self.contrast),
        }
    }
}

fn symmetric<R: Rng + ?Sized>(rng: &mut R, max: f32) -> f32 {
    if max > 0.0 {
        rng.random_range(-max..=max)
    } else {
        0.0
    }
}

/// One image's drawn augmentation, in concrete units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// Rotation about the image centre, degrees (positive turns content clockwise on screen,
    /// since rows grow downwards).
    pub rotate_deg: f32,
    /// Zoom factor about the centre (1 = none, above 1 enlarges the content).
    pub zoom: f32,
    /// Translation of the content, pixels (positive = right / down).
    pub shift_x: f32,
    pub shift_y: f32,
    /// Mirror left-right.
    pub hflip: bool,
    /// Added to intensities on the 0..1 scale.
    pub brightness: f32,
    /// Gain about the image's own mean intensity (1 = none), so contrast does not shift brightness.
    pub contrast: f32,
}

impl AugmentParams {
    pub const IDENTITY: AugmentParams = AugmentParams {
        rotate_deg: 0.0,
        zoom: 1.0,
        shift_x: 0.0,
        shift_y: 0.0,
        hflip: false,
        brightness: 0.0,
        contrast: 1.0,
    };

    fn moves_pixels(&self) -> bool {
        self.rotate_deg != 0.0 || self.zoom != 1.0 || self.shift_x != 0.0 || self.shift_y != 0.0 || self.hflip
    }

    fn changes_intensity(&self) -> bool {
        self.brightness != 0.0 || self.contrast != 1.0
    }
}

/// The data set's intensity statistics on the 0..1 scale; images become `(x/255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    /// The value a raw pixel becomes without augmentation.
    pub fn apply(&self, pixel: u8) -> f32 {
        (pixel as f32 / 255.0 - self.mean) / self.std
    }

    fn table(&self) -> [f32; 256] {
        std::array::from_fn(|v| self.apply(v as u8))
    }
}

/// Turns one `size × size` u8 image into normalised f32 pixels (`out`, row-major), applying the
/// drawn augmentation.
///
/// Without a warp, each pixel is one lookup in a 256-entry table (exact normalisation). With a
/// warp, the inverse affine map from output to input coordinates is computed once per image and
/// stepped along each row in 16.16 fixed point; the four neighbours are blended in integers to
/// 1/16 of a grey level, then intensity jitter and normalisation are one multiply-add and a
/// clamp. Integer blending keeps the inner loop short, which matters: this runs for every
/// training image every epoch.
///
/// Samples that fall outside the source take the nearest edge pixel, not black: the warps are
/// a few pixels at most, edge pixels of a film are usually background already, and a black
/// frame whose width follows the drawn shift would be a synthetic pattern the network could
/// latch onto (real films have no such frame at random widths).
pub fn render(src: &[u8], size: usize, params: &AugmentParams, norm: &Normalization, out: &mut [f32]) {
    assert_eq!(src.len(), size * size, "source image is not {size}×{size}");
    assert_eq!(out.len(), size * size, "output buffer is not {size}×{size}");
    if size == 0 {
        return;
    }
    let intensity = IntensityMap::new(src, params, norm);
    if !params.moves_pixels() {
        let table: [f32; 256] = if params.changes_intensity() {
            std::array::from_fn(|v| intensity.apply(v as f32 / 255.0))
        } else {
            norm.table()
        };
        for (o, &p) in out.iter_mut().zip(src) {
            *o = table[p as usize];
        }
        return;
    }
    // Blended values run 0..=BLEND_MAX for grey levels 0..=255.
    const BLEND_SHIFT: u32 = 12;
    const BLEND_MAX: f32 = ((255u32 * 256 * 256) >> BLEND_SHIFT) as f32;
    let per_step = IntensityMap {
        gain: intensity.gain / BLEND_MAX,
        ..intensity
    };
    let warp = InverseWarp::new(params, size);
    let to_fixed = |v: f32| (v as f64 * 65536.0).round() as i64;
    let (step_x, step_y) = (to_fixed(warp.a), to_fixed(warp.c));
    let max_coord = ((size - 1) as i64) << 16;
    // Coordinates in [0, size - 1) have their right and lower neighbours inside the image.
    let interior = max_coord as u64;
    let last = size - 1;
    for (y, row) in out.chunks_exact_mut(size).enumerate() {
        let yf = y as f32;
        let mut sx = to_fixed(warp.b * yf + warp.ox);
        let mut sy = to_fixed(warp.d * yf + warp.oy);
        for o in row.iter_mut() {
            let (x, y) = (sx, sy);
            sx += step_x;
            sy += step_y;
            // Weights in 1/256 of a pixel; wrapping arithmetic because indices are in range by
            // construction and overflow checks would double the work in debug builds.
            let blended = if (x as u64) < interior && (y as u64) < interior {
                // All four neighbours inside: the common case, one bounds check.
                let (fx, fy) = (((x >> 8) & 0xff) as u32, ((y >> 8) & 0xff) as u32);
                let base = ((y >> 16) as usize).wrapping_mul(size).wrapping_add((x >> 16) as usize);
                let quad = &src[base..base + size + 2];
                let upper = (quad[0] as u32).wrapping_mul(256 - fx) + (quad[1] as u32).wrapping_mul(fx);
                let lower = (quad[size] as u32).wrapping_mul(256 - fx) + (quad[size + 1] as u32).wrapping_mul(fx);
                (upper.wrapping_mul(256 - fy) + lower.wrapping_mul(fy)) >> BLEND_SHIFT
            } else {
                let (cx, cy) = (x.clamp(0, max_coord), y.clamp(0, max_coord));
                let (fx, fy) = (((cx >> 8) & 0xff) as u32, ((cy >> 8) & 0xff) as u32);
                let (x0, y0) = ((cx >> 16) as usize, (cy >> 16) as usize);
                let (x1, y1) = ((x0 + 1).min(last), (y0 + 1).min(last));
                let top = &src[y0 * size..][..size];
                let bottom = &src[y1 * size..][..size];
                let upper = top[x0] as u32 * (256 - fx) + top[x1] as u32 * fx;
                let lower = bottom[x0] as u32 * (256 - fx) + bottom[x1] as u32 * fx;
                (upper * (256 - fy) + lower * fy) >> BLEND_SHIFT
            };
            // Parked as raw bits; converted below in a separate pass.
            *o = f32::from_bits(blended);
        }
        // Converting per pixel inside the loop above serialises it (scalar int-to-float writes
        // only part of its register, so each pixel waits for the previous one); a pass of its
        // own over the row vectorises instead.
        for o in row.iter_mut() {
            *o = per_step.apply(o.to_bits() as f32);
        }
    }
}

/// Brightness, contrast (about the image's mean) and normalisation folded into one
/// multiply-add and clamp, from intensity on the 0..1 scale to the normalised value.
#[derive(Clone, Copy)]
struct IntensityMap {
    gain: f32,
    bias: f32,
    /// Normalised black and white: jitter saturates instead of leaving the film's range.
    low: f32,
    high: f32,
}

impl IntensityMap {
    fn new(src: &[u8], params: &AugmentParams, norm: &Normalization) -> Self {
        // Wrapping add: a u64 cannot overflow here, and checked adds do not vectorise in debug builds.
        let image_mean = if params.contrast != 1.0 {
            src.iter().fold(0u64, |sum, &p| sum.wrapping_add(p as u64)) as f32 / (src.len().max(1) as f32 * 255.0)
        } else {
            0.0
        };
        // (clamp(x·c + m·(1-c) + b, 0, 1) - mean) / std, expanded.
        IntensityMap {
            gain: params.contrast / norm.std,
            bias: (image_mean * (1.0 - params.contrast) + params.brightness - norm.mean) / norm.std,
            low: -norm.mean / norm.std,
            high: (1.0 - norm.mean) / norm.std,
        }
    }

    fn apply(&self, x: f32) -> f32 {
        // Plain comparisons (no NaN handling needed) compile to single min/max instructions.
        let y = x * self.gain + self.bias;
        let y = if y < self.low { self.low } else { y };
        if y > self.high {
            self.high
        } else {
            y
        }
    }
}

/// Output pixel (x, y) reads the source at (a·x + b·y + ox, c·x + d·y + oy). Pixel centres sit on
/// integer coordinates, so the identity, flips and whole-pixel shifts copy pixels exactly.
struct InverseWarp {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    ox: f32,
    oy: f32,
}

impl InverseWarp {
    /// Forward map (source to output): mirror, zoom and rotate about the centre, then shift.
    /// Inverting it: subtract centre and shift, rotate back, divide by the zoom, mirror.
    fn new(params: &AugmentParams, size: usize) -> Self {
        let centre = (size as f32 - 1.0) / 2.0;
        let (sin, cos) = params.rotate_deg.to_radians().sin_cos();
        let mirror = if params.hflip { -1.0 } else { 1.0 };
        let a = mirror * cos / params.zoom;
        let b = mirror * sin / params.zoom;
        let c = -sin / params.zoom;
        let d = cos / params.zoom;
        let (px, py) = (centre + params.shift_x, centre + params.shift_y);
        InverseWarp {
            a,
            b,
            c,
            d,
            ox: centre - (a * px + b * py),
            oy: centre - (c * px + d * py),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Unit normalisation keeps expectations on the 0..1 scale.
    const UNIT: Normalization = Normalization { mean: 0.0, std: 1.0 };

    fn textured(size: usize) -> Vec<u8> {
        (0..size * size)
            .map(|i| ((i * 37 + i / size * 11) % 256) as u8)
            .collect()
    }

    fn rendered(src: &[u8], size: usize, params: AugmentParams, norm: &Normalization) -> Vec<f32> {
        let mut out = vec![f32::NAN; size * size];
        render(src, size, &params, norm, &mut out);
        out
    }

    #[test]
    fn disabled_augmentation_only_normalises() {
        let config = AugmentConfig::disabled();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(config.sample(&mut rng, 16), AugmentParams::IDENTITY);
        let src = textured(16);
        let norm = Normalization { mean: 0.49, std: 0.23 };
        let out = rendered(&src, 16, AugmentParams::IDENTITY, &norm);
        let expected: Vec<f32> = src.iter().map(|&p| (p as f32 / 255.0 - 0.49) / 0.23).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn horizontal_flip_mirrors_each_row() {
        let (size, src) = (9, textured(9));
        let out = rendered(
            &src,
            size,
            AugmentParams {
                hflip: true,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        for y in 0..size {
            for x in 0..size {
                let want = UNIT.apply(src[y * size + size - 1 - x]);
                assert!((out[y * size + x] - want).abs() < 1e-6, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn translation_moves_content_and_repeats_the_edge() {
        let (size, src) = (10, textured(10));
        let params = AugmentParams {
            shift_x: 3.0,
            shift_y: -2.0,
            ..AugmentParams::IDENTITY
        };
        let out = rendered(&src, size, params, &UNIT);
        for y in 0..size {
            for x in 0..size {
                // Content moved right 3, up 2; outside the source the nearest edge pixel.
                let sx = (x as isize - 3).clamp(0, size as isize - 1) as usize;
                let sy = (y + 2).min(size - 1);
                let want = UNIT.apply(src[sy * size + sx]);
                assert!((out[y * size + x] - want).abs() < 1e-6, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn half_pixel_shift_blends_neighbours() {
        let (size, src) = (8, textured(8));
        let out = rendered(
            &src,
            size,
            AugmentParams {
                shift_x: 0.5,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        for y in 0..size {
            for x in 1..size {
                let want = (UNIT.apply(src[y * size + x - 1]) + UNIT.apply(src[y * size + x])) / 2.0;
                // Blending is exact to 1/16 of a grey level.
                assert!((out[y * size + x] - want).abs() < 1.0 / 4080.0, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn jitter_is_the_same_with_and_without_a_warp() {
        let (size, src) = (8, textured(8));
        let norm = Normalization { mean: 0.45, std: 0.27 };
        let jitter = AugmentParams {
            brightness: 0.07,
            contrast: 1.08,
            ..AugmentParams::IDENTITY
        };
        let flat = rendered(&src, size, jitter, &norm);
        let flipped = rendered(&src, size, AugmentParams { hflip: true, ..jitter }, &norm);
        for y in 0..size {
            for x in 0..size {
                let (a, b) = (flipped[y * size + x], flat[y * size + size - 1 - x]);
                assert!((a - b).abs() < 1e-5, "pixel ({x}, {y}): {a} vs {b}");
            }
        }
    }

    #[test]
    fn rotation_turns_content_about_the_centre() {
        let (size, src) = (12, textured(12));
        // A quarter turn: output (x, y) shows source (y, size-1-x).
        let out = rendered(
            &src,
            size,
            AugmentParams {
                rotate_deg: 90.0,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        for y in 0..size {
            for x in 0..size {
                let want = UNIT.apply(src[(size - 1 - x) * size + y]);
                assert!(
                    (out[y * size + x] - want).abs() < 1e-3,
                    "pixel ({x}, {y}): {} vs {want}",
                    out[y * size + x]
                );
            }
        }
    }

    #[test]
    fn rotation_leaves_a_radially_symmetric_image_alone() {
        let size = 64;
        let centre = (size as f32 - 1.0) / 2.0;
        let radius = |x: usize, y: usize| ((x as f32 - centre).powi(2) + (y as f32 - centre).powi(2)).sqrt();
        let src: Vec<u8> = (0..size * size)
            .map(|i| (255.0 * (1.0 - radius(i % size, i / size) / 40.0).max(0.0)).round() as u8)
            .collect();
        let out = rendered(
            &src,
            size,
            AugmentParams {
                rotate_deg: 17.0,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        let mut moved = 0.0f32;
        // Inside the inscribed circle every sample comes from within the image.
        for y in 0..size {
            for x in (0..size).filter(|&x| radius(x, y) <= centre) {
                let err = (out[y * size + x] - UNIT.apply(src[y * size + x])).abs();
                assert!(err < 0.02, "pixel ({x}, {y}) changed by {err}");
                moved = moved.max(err);
            }
        }
        // The same rotation does change an asymmetric image, so the check above is not vacuous.
        let asym = textured(size);
        let turned = rendered(
            &asym,
            size,
            AugmentParams {
                rotate_deg: 17.0,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        let identity = rendered(&asym, size, AugmentParams::IDENTITY, &UNIT);
        let changed = turned
            .iter()
            .zip(&identity)
            .filter(|(a, b)| (*a - *b).abs() > 0.05)
            .count();
        assert!(
            changed > size * size / 2,
            "rotation changed only {changed} pixels of a textured image"
        );
        assert!(moved < 0.02);
    }

    #[test]
    fn zoom_keeps_the_centre_and_enlarges_content() {
        // A bright 2×2 square in the middle of a dark 8×8 image grows under a zoom of 2.
        let size = 8;
        let src: Vec<u8> = (0..64)
            .map(|i| {
                if (3..5).contains(&(i % 8)) && (3..5).contains(&(i / 8)) {
                    255
                } else {
                    0
                }
            })
            .collect();
        let out = rendered(
            &src,
            size,
            AugmentParams {
                zoom: 2.0,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        let bright = |img: &[f32]| img.iter().filter(|&&v| v > 0.5).count();
        let identity = rendered(&src, size, AugmentParams::IDENTITY, &UNIT);
        assert_eq!(bright(&identity), 4);
        assert!(bright(&out) > 4, "zoomed square has {} bright pixels", bright(&out));
        assert!(
            out[3 * size + 3] > 0.5 && out[4 * size + 4] > 0.5,
            "the centre must stay bright"
        );
    }

    #[test]
    fn brightness_and_contrast_act_on_intensity() {
        let size = 4;
        // Half 51, half 153: image mean 102/255 = 0.4.
        let src: Vec<u8> = (0..16).map(|i| if i < 8 { 51 } else { 153 }).collect();
        let out = rendered(
            &src,
            size,
            AugmentParams {
                brightness: 0.1,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        assert!((out[0] - 0.3).abs() < 1e-6 && (out[15] - 0.7).abs() < 1e-6, "{out:?}");
        let out = rendered(
            &src,
            size,
            AugmentParams {
                contrast: 1.5,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        assert!((out[0] - 0.1).abs() < 1e-6 && (out[15] - 0.7).abs() < 1e-6, "{out:?}");
        // Jitter saturates at black and white instead of leaving the film's range.
        let out = rendered(
            &src,
            size,
            AugmentParams {
                brightness: 0.9,
                ..AugmentParams::IDENTITY
            },
            &UNIT,
        );
        assert_eq!(out[15], 1.0);
    }

    #[test]
    fn sampled_parameters_stay_within_the_configured_ranges() {
        let config = AugmentConfig {
            hflip: true,
            ..AugmentConfig::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let draws: Vec<AugmentParams> = (0..2000).map(|_| config.sample(&mut rng, 100)).collect();
        let range = |f: fn(&AugmentParams) -> f32| {
            let values = draws.iter().map(f);
            (values.clone().fold(f32::MAX, f32::min), values.fold(f32::MIN, f32::max))
        };
        for (name, (lo, hi), (min, max)) in [
            ("rotation", range(|p| p.rotate_deg), (-5.0, 5.0)),
            ("zoom", range(|p| p.zoom), (0.95, 1.05)),
            ("shift x", range(|p| p.shift_x), (-5.0, 5.0)),
            ("shift y", range(|p| p.shift_y), (-5.0, 5.0)),
            ("brightness", range(|p| p.brightness), (-0.1, 0.1)),
            ("contrast", range(|p| p.contrast), (0.9, 1.1)),
        ] {
            assert!(
                lo >= min - 1e-6 && hi <= max + 1e-6,
                "{name} drawn in {lo}..{hi}, allowed {min}..{max}"
            );
            // Both ends are reached closely: the draws use the whole range.
            let span = max - min;
            assert!(
                lo < min + 0.05 * span && hi > max - 0.05 * span,
                "{name} drawn only in {lo}..{hi}"
            );
        }
        let flips = draws.iter().filter(|p| p.hflip).count();
        assert!((800..1200).contains(&flips), "{flips} flips in 2000 draws");
        let no_flip = AugmentConfig::default();
        assert!(
            (0..200).all(|_| !no_flip.sample(&mut rng, 100).hflip),
            "flips must be off by default"
        );
    }

    #[test]
    fn validation_names_the_flag() {
        assert_eq!(AugmentConfig::default().validate(), Ok(()));
        let err = AugmentConfig {
            rotate_deg: f32::NAN,
            ..AugmentConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.flag, "aug-rotate");
        assert!(err.to_string().contains("--aug-rotate"), "{err}");
        let err = AugmentConfig {
            contrast: 1.0,
            ..AugmentConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!((err.flag, err.value, err.max), ("aug-contrast", 1.0, 0.9));
        assert!(
            err.to_string()
                .contains("--aug-contrast must be between 0 and 0.9, got 1"),
            "{err}"
        );
    }
}

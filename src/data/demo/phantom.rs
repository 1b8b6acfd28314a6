//! The chest phantom: a patient's anatomy and each NIH finding as parameters, and the renderer
//! that turns them into an 8-bit frontal radiograph-like image.
//!
//! Rendering works in an attenuation ("density") domain: soft tissue is 1, lung air lowers it,
//! bone and opacities raise it; brightness is `1 - exp(-exposure * density)` as on a film, then
//! noise is added. Coordinates are `x, y` in `[-1, 1]`, image left = patient right, `y` down.
//! Every finding is drawn large and contrasted enough to stay visible at 64×64 pixels.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A patient's build and positioning for one image; every field varies between patients (and a
/// little between one patient's follow-ups) so that no single pixel gives a finding away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anatomy {
    /// Half-width of the chest wall.
    pub thorax_half_width: f32,
    /// Horizontal distance of each lung's centre from the midline.
    pub lung_center_x: f32,
    pub lung_half_width: f32,
    /// Height of the lung apices.
    pub lung_apex_y: f32,
    /// Height of the top of the right (image-left) and left hemidiaphragm domes.
    pub diaphragm_right_y: f32,
    pub diaphragm_left_y: f32,
    /// Dome curvature of the diaphragm.
    pub diaphragm_curvature: f32,
    pub heart_center_x: f32,
    pub heart_center_y: f32,
    pub heart_half_width: f32,
    pub heart_half_height: f32,
    pub rib_spacing: f32,
    pub rib_offset: f32,
    pub gastric_bubble: bool,
    pub female: bool,
    /// AP films magnify the heart and are noisier (bedside, sicker patients).
    pub ap_view: bool,
    /// Radians; patient rotation on the detector.
    pub rotation: f32,
    pub shift_x: f32,
    pub shift_y: f32,
    pub scale: f32,
    pub exposure: f32,
    pub noise: f32,
    /// Seed of the patient's own vessel pattern, so follow-ups show the same lungs.
    pub vessel_seed: u64,
}

impl Anatomy {
    /// A random normal patient.
    pub fn sample(rng: &mut impl Rng, female: bool) -> Self {
        let size = if female { 0.96 } else { 1.0 };
        Anatomy {
            thorax_half_width: rng.random_range(0.80..0.90) * size,
            lung_center_x: rng.random_range(0.40..0.45) * size,
            lung_half_width: rng.random_range(0.30..0.35) * size,
            lung_apex_y: rng.random_range(-0.80..-0.68),
            diaphragm_right_y: rng.random_range(0.40..0.52),
            diaphragm_left_y: 0.0, // set below: the left dome sits a little lower
            diaphragm_curvature: rng.random_range(0.9..1.5),
            heart_center_x: rng.random_range(0.04..0.10),
            heart_center_y: rng.random_range(0.28..0.36),
            heart_half_width: rng.random_range(0.33..0.39) * size,
            heart_half_height: rng.random_range(0.26..0.31),
            rib_spacing: rng.random_range(0.13..0.16),
            rib_offset: rng.random_range(-0.86..-0.78),
            gastric_bubble: rng.random_bool(0.7),
            female,
            ap_view: false,
            rotation: 0.0,
            shift_x: 0.0,
            shift_y: 0.0,
            scale: 1.0,
            exposure: 1.5,
            noise: 0.02,
            vessel_seed: rng.random(),
        }
        .with_left_dome(rng)
    }

    fn with_left_dome(mut self, rng: &mut impl Rng) -> Self {
        self.diaphragm_left_y = self.diaphragm_right_y + rng.random_range(0.02..0.08);
        self
    }

    /// The same patient on another day: positioning, exposure and noise change, anatomy does not.
    pub fn for_image(&self, rng: &mut impl Rng, ap_view: bool) -> Self {
        let mut a = self.clone();
        a.ap_view = ap_view;
        a.rotation = rng.random_range(-0.06..0.06);
        a.shift_x = rng.random_range(-0.05..0.05);
        a.shift_y = rng.random_range(-0.05..0.05);
        a.scale = rng.random_range(0.92..1.04);
        a.exposure = rng.random_range(1.25..1.75);
        a.noise = if ap_view {
            rng.random_range(0.025..0.045)
        } else {
            rng.random_range(0.015..0.035)
        };
        // Inspiration depth varies from film to film.
        let breath = rng.random_range(-0.04..0.04);
        a.diaphragm_right_y += breath;
        a.diaphragm_left_y += breath;
        if ap_view {
            a.heart_half_width *= 1.08;
        }
        a
    }
}

/// One finding's drawing parameters. `side` is -1 for the patient's right (image left), +1 left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "finding")]
pub enum Lesion {
    /// Plate-like band of collapse plus volume loss (raised hemidiaphragm, heart pulled over).
    Atelectasis {
        side: f32,
        y: f32,
        half_thickness: f32,
        tilt: f32,
        fill: f32,
        volume_loss: f32,
    },
    /// Heart shadow widened by `scale`.
    Cardiomegaly { scale: f32 },
    /// Fluid filling the base up to `level` above the dome, rising laterally (meniscus).
    Effusion { side: f32, level: f32, meniscus: f32 },
    /// Several faint, ill-defined patches.
    Infiltration { patches: Vec<Blob> },
    /// Large lobulated round opacity.
    Mass { x: f32, y: f32, radius: f32, density: f32 },
    /// Small sharp round opacity.
    Nodule { x: f32, y: f32, radius: f32, density: f32 },
    /// One fuzzy rounded airspace opacity.
    Pneumonia {
        x: f32,
        y: f32,
        rx: f32,
        ry: f32,
        fill: f32,
    },
    /// Lung collapsed away from the chest wall by `gap`: lucent rim without markings, pleural line.
    Pneumothorax { side: f32, gap: f32 },
    /// Dense homogeneous lobar block with a sharp fissure edge on top.
    Consolidation {
        side: f32,
        top: f32,
        height: f32,
        fill: f32,
    },
    /// Bilateral perihilar (bat-wing) haze with Kerley B lines at the bases.
    Edema { fill: f32, kerley_lines: u8 },
    /// Hyperlucent, over-expanded lungs with flat low diaphragm and few markings.
    Emphysema { severity: f32 },
    /// Reticular net in both lower zones with volume loss.
    Fibrosis { fill: f32, period: f32, height: f32 },
    /// Thick pleural band along the lateral chest wall and apex.
    #[serde(rename = "Pleural_Thickening")]
    PleuralThickening { side: f32, thickness: f32 },
    /// Round retrocardiac opacity above the diaphragm with a gas-fluid level.
    Hernia { x: f32, y: f32, radius: f32 },
}

/// A soft elliptical patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blob {
    pub x: f32,
    pub y: f32,
    pub radius: f32,
    pub fill: f32,
}

impl Lesion {
    /// The NIH label this lesion draws.
    pub fn label(&self) -> &'static str {
        match self {
            Lesion::Atelectasis { .. } => "Atelectasis",
            Lesion::Cardiomegaly { .. } => "Cardiomegaly",
            Lesion::Effusion { .. } => "Effusion",
            Lesion::Infiltration { .. } => "Infiltration",
            Lesion::Mass { .. } => "Mass",
            Lesion::Nodule { .. } => "Nodule",
            Lesion::Pneumonia { .. } => "Pneumonia",
            Lesion::Pneumothorax { .. } => "Pneumothorax",
            Lesion::Consolidation { .. } => "Consolidation",
            Lesion::Edema { .. } => "Edema",
            Lesion::Emphysema { .. } => "Emphysema",
            Lesion::Fibrosis { .. } => "Fibrosis",
            Lesion::PleuralThickening { .. } => "Pleural_Thickening",
            Lesion::Hernia { .. } => "Hernia",
        }
    }

    /// Random parameters for the finding called `label` (NIH spelling) in this patient, or
    /// `None` for a name that is not one of the 14 findings.
    pub fn sample(label: &str, anatomy: &Anatomy, rng: &mut impl Rng) -> Option<Lesion> {
        let side = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let a = anatomy;
        // A point well inside a lung, in the zone between `y0` and `y1`.
        let lung_point = |rng: &mut dyn rand::RngCore, side: f32, y0: f32, y1: f32| {
            let x = side * (a.lung_center_x + rng.random_range(-0.5..0.55) * a.lung_half_width);
            (x, rng.random_range(y0..y1))
        };
        let lesion = match label {
            "Atelectasis" => Lesion::Atelectasis {
                side,
                y: rng.random_range(0.0..0.28),
                half_thickness: rng.random_range(0.035..0.06),
                tilt: rng.random_range(-0.25..0.25),
                fill: rng.random_range(0.75..0.95),
                volume_loss: rng.random_range(0.08..0.14),
            },
            "Cardiomegaly" => Lesion::Cardiomegaly {
                scale: rng.random_range(1.35..1.6),
            },
            "Effusion" => Lesion::Effusion {
                side,
                level: rng.random_range(0.2..0.45),
                meniscus: rng.random_range(0.10..0.22),
            },
            "Infiltration" => {
                let n = rng.random_range(3..=6);
                let patches = (0..n)
                    .map(|_| {
                        let s = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
                        let (x, y) = lung_point(rng, s, -0.45, 0.25);
                        Blob {
                            x,
                            y,
                            radius: rng.random_range(0.07..0.12),
                            fill: rng.random_range(0.35..0.55),
                        }
                    })
                    .collect();
                Lesion::Infiltration { patches }
            }
            "Mass" => {
                let (x, y) = lung_point(rng, side, -0.45, 0.15);
                Lesion::Mass {
                    x,
                    y,
                    radius: rng.random_range(0.12..0.19),
                    density: rng.random_range(0.15..0.3),
                }
            }
            "Nodule" => {
                let (x, y) = lung_point(rng, side, -0.5, 0.2);
                Lesion::Nodule {
                    x,
                    y,
                    radius: rng.random_range(0.05..0.075),
                    density: rng.random_range(0.25..0.4),
                }
            }
            "Pneumonia" => {
                let (x, y) = lung_point(rng, side, -0.3, 0.25);
                Lesion::Pneumonia {
                    x,
                    y,
                    rx: rng.random_range(0.13..0.2),
                    ry: rng.random_range(0.12..0.18),
                    fill: rng.random_range(0.6..0.8),
                }
            }
            "Pneumothorax" => Lesion::Pneumothorax {
                side,
                gap: rng.random_range(0.12..0.22),
            },
            "Consolidation" => Lesion::Consolidation {
                side,
                top: rng.random_range(-0.55..-0.1),
                height: rng.random_range(0.25..0.4),
                fill: rng.random_range(0.9..1.0),
            },
            "Edema" => Lesion::Edema {
                fill: rng.random_range(0.45..0.7),
                kerley_lines: rng.random_range(3..=6),
            },
            "Emphysema" => Lesion::Emphysema {
                severity: rng.random_range(0.7..1.0),
            },
            "Fibrosis" => Lesion::Fibrosis {
                fill: rng.random_range(0.5..0.75),
                period: rng.random_range(0.075..0.1),
                height: rng.random_range(0.35..0.5),
            },
            "Pleural_Thickening" => Lesion::PleuralThickening {
                side,
                thickness: rng.random_range(0.05..0.08),
            },
            "Hernia" => Lesion::Hernia {
                x: rng.random_range(-0.02..0.1),
                y: a.diaphragm_right_y - rng.random_range(0.08..0.16),
                radius: rng.random_range(0.11..0.15),
            },
            _ => return None,
        };
        Some(lesion)
    }
}

/// Everything needed to draw one image; `noise_seed` makes the grain reproducible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phantom {
    pub anatomy: Anatomy,
    pub lesions: Vec<Lesion>,
    pub noise_seed: u64,
}

/// Anatomy after the global effects of findings (volume loss, enlargement, over-inflation).
struct Shape {
    a: Anatomy,
    /// Lung air's density drop; larger = darker lungs.
    air: f32,
    /// Strength of vessel markings.
    markings: f32,
    /// Per side (index 0 = right/image-left): extra dome height lost to volume loss.
    dome_lift: [f32; 2],
    /// Lateral edge of a pneumothorax-collapsed lung, per side (0 = no pneumothorax).
    collapse: [f32; 2],
}

fn side_index(side: f32) -> usize {
    usize::from(side > 0.0)
}

impl Shape {
    fn new(a: &Anatomy, lesions: &[Lesion]) -> Self {
        let mut shape = Shape {
            a: a.clone(),
            air: 0.6,
            markings: 1.0,
            dome_lift: [0.0; 2],
            collapse: [0.0; 2],
        };
        for lesion in lesions {
            match *lesion {
                Lesion::Cardiomegaly { scale } => {
                    shape.a.heart_half_width *= scale;
                    shape.a.heart_half_height *= 1.0 + (scale - 1.0) * 0.35;
                }
                Lesion::Emphysema { severity } => {
                    shape.air += 0.25 * severity;
                    shape.markings *= 1.0 - 0.6 * severity;
                    shape.a.diaphragm_right_y += 0.14 * severity;
                    shape.a.diaphragm_left_y += 0.12 * severity;
                    shape.a.diaphragm_curvature *= 1.0 - 0.75 * severity;
                    shape.a.lung_half_width += 0.03 * severity;
                    shape.a.heart_half_width *= 1.0 - 0.12 * severity;
                }
                Lesion::Atelectasis { side, volume_loss, .. } => {
                    shape.dome_lift[side_index(side)] += volume_loss;
                    shape.a.heart_center_x += side * volume_loss * 0.4;
                }
                Lesion::Fibrosis { .. } => {
                    shape.dome_lift[0] += 0.05;
                    shape.dome_lift[1] += 0.05;
                }
                Lesion::Edema { .. } => shape.markings *= 1.4,
                Lesion::Pneumothorax { side, gap } => shape.collapse[side_index(side)] = gap,
                _ => {}
            }
        }
        shape.a.diaphragm_right_y -= shape.dome_lift[0];
        shape.a.diaphragm_left_y -= shape.dome_lift[1];
        shape
    }

    fn dome_y(&self, x: f32) -> f32 {
        let (top, cx) = if x < 0.0 {
            (self.a.diaphragm_right_y, -self.a.lung_center_x)
        } else {
            (self.a.diaphragm_left_y, self.a.lung_center_x)
        };
        top + self.a.diaphragm_curvature * (x - cx) * (x - cx)
    }

    /// Lung ellipse of `side`: centre and radii; the bottom reaches below the dome top so the
    /// dome cuts it and leaves a deep lateral costophrenic angle.
    fn lung_ellipse(&self, side: f32) -> (f32, f32, f32, f32) {
        let a = &self.a;
        let dome = if side < 0.0 {
            a.diaphragm_right_y
        } else {
            a.diaphragm_left_y
        };
        let bottom = dome + 0.3;
        let cy = (a.lung_apex_y + bottom) * 0.5;
        let ry = (bottom - a.lung_apex_y) * 0.5;
        (side * a.lung_center_x, cy, a.lung_half_width, ry)
    }
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Soft inside-mask of an ellipse: 1 inside, 0 outside, blurred by `soft` (in radius units).
fn ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32, soft: f32) -> f32 {
    let dx = (x - cx) / rx;
    let dy = (y - cy) / ry;
    let r = (dx * dx + dy * dy).sqrt();
    smoothstep(1.0 + soft, 1.0 - soft, r)
}

/// Distance from `p` to the segment `a`–`b`, and the position along it (0..1).
fn segment_distance(px: f32, py: f32, ax: f32, ay: f32, bx: f32, by: f32) -> (f32, f32) {
    let (vx, vy) = (bx - ax, by - ay);
    let t = (((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)).clamp(0.0, 1.0);
    let (dx, dy) = (px - ax - t * vx, py - ay - t * vy);
    ((dx * dx + dy * dy).sqrt(), t)
}

fn hash(mut v: u64) -> u64 {
    // SplitMix64 finaliser: a cheap, well-mixed integer hash for noise lattices.
    v = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    v = (v ^ (v >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    v = (v ^ (v >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    v ^ (v >> 31)
}

fn lattice(seed: u64, ix: i32, iy: i32) -> f32 {
    let h = hash(seed ^ ((ix as u32 as u64) << 32 | iy as u32 as u64));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Smooth value noise in [0, 1] with feature size `1 / frequency`.
fn value_noise(seed: u64, x: f32, y: f32, frequency: f32) -> f32 {
    let (fx, fy) = (x * frequency + 100.0, y * frequency + 100.0);
    let (ix, iy) = (fx.floor() as i32, fy.floor() as i32);
    let (tx, ty) = (fx - ix as f32, fy - iy as f32);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let top = lattice(seed, ix, iy) * (1.0 - sx) + lattice(seed, ix + 1, iy) * sx;
    let bottom = lattice(seed, ix, iy + 1) * (1.0 - sx) + lattice(seed, ix + 1, iy + 1) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// A vessel: a tapering line from the hilum into the lung.
struct Vessel {
    ax: f32,
    ay: f32,
    bx: f32,
    by: f32,
    width: f32,
}

fn vessels(shape: &Shape) -> Vec<Vessel> {
    let a = &shape.a;
    let mut out = Vec::new();
    for (k, side) in [-1.0f32, 1.0].into_iter().enumerate() {
        let (hx, hy) = (side * (a.lung_center_x - a.lung_half_width * 0.55), -0.02);
        for i in 0..12u64 {
            let h = hash(a.vessel_seed ^ (k as u64 * 1000 + i));
            let u = |shift: u32| ((h >> shift) & 0xffff) as f32 / 65535.0;
            // Fan from up-and-out to down-and-out (angles measured from straight lateral).
            let angle = -1.3 + 2.5 * (i as f32 + u(0)) / 12.0;
            let length = 0.25 + 0.3 * u(16);
            out.push(Vessel {
                ax: hx,
                ay: hy,
                bx: hx + side * angle.cos() * length,
                by: hy + angle.sin() * length,
                width: 0.012 + 0.01 * u(32),
            });
        }
    }
    out
}

/// Renders `phantom` as `size`×`size` 8-bit gray pixels, row by row.
pub fn render(phantom: &Phantom, size: u32) -> Vec<u8> {
    let shape = Shape::new(&phantom.anatomy, &phantom.lesions);
    let vessels = vessels(&shape);
    let a = &shape.a;
    let n = size as usize;
    let mut pixels = Vec::with_capacity(n * n);
    let (sin, cos) = a.rotation.sin_cos();
    // Brightness of plain soft tissue, used to normalise exposure so images share a range.
    let full = 1.0 - (-a.exposure * 1.45f32).exp();
    let grain_seed = phantom.noise_seed;
    for row in 0..n {
        for col in 0..n {
            let ix = (col as f32 + 0.5) / n as f32 * 2.0 - 1.0;
            let iy = (row as f32 + 0.5) / n as f32 * 2.0 - 1.0;
            // Detector → patient coordinates: undo shift, scale and rotation.
            let (ux, uy) = ((ix - a.shift_x) / a.scale, (iy - a.shift_y) / a.scale);
            let x = cos * ux + sin * uy;
            let y = -sin * ux + cos * uy;
            let density = density_at(&shape, &phantom.lesions, &vessels, grain_seed, x, y);
            let mut v = (1.0 - (-a.exposure * density.max(0.0)).exp()) / full;
            // Quantum noise plus a fine, correlated film grain.
            let grain = value_noise(grain_seed ^ 0x5eed, ix, iy, size as f32 * 0.5) - 0.5;
            let white = lattice(grain_seed, col as i32, row as i32) - 0.5;
            v += a.noise * (2.0 * white + grain);
            pixels.push((v.clamp(0.0, 1.0) * 235.0 + 8.0).round() as u8);
        }
    }
    pixels
}

fn density_at(shape: &Shape, lesions: &[Lesion], vessels: &[Vessel], seed: u64, x: f32, y: f32) -> f32 {
    let a = &shape.a;
    // Body outline: a rounded box narrowing into the shoulders, plus the neck.
    let bx = x / a.thorax_half_width;
    let by = (y - 0.3) / 1.25;
    let body_r = (bx.powi(4) + by.powi(4)).powf(0.25);
    let neck = smoothstep(0.24, 0.2, x.abs()) * smoothstep(-0.5, -0.6, y);
    let body = smoothstep(1.04, 0.98, body_r).max(neck);
    // Arms beside the chest.
    let arm = smoothstep(0.06, 0.0, (x.abs() - a.thorax_half_width - 0.12).abs() - 0.05) * smoothstep(-0.7, -0.5, y);
    let mut d = body * 1.0 + arm * 0.7;

    let side = if x < 0.0 { -1.0f32 } else { 1.0 };
    let s = side_index(side);
    let heart = ellipse(
        x,
        y,
        a.heart_center_x,
        a.heart_center_y,
        a.heart_half_width,
        a.heart_half_height,
        0.06,
    );
    let (lcx, lcy, lrx, lry) = shape.lung_ellipse(side);
    let lung_shape = ellipse(x, y, lcx, lcy, lrx, lry, 0.05);
    let below_dome = smoothstep(-0.015, 0.015, y - shape.dome_y(x));
    let medial = smoothstep(0.07, 0.11, x.abs());
    let lung = lung_shape * (1.0 - below_dome) * medial * (1.0 - heart);

    // Pneumothorax: the lung is collapsed towards the hilum; the rim keeps no lung tissue.
    let gap = shape.collapse[s];
    let collapsed = if gap > 0.0 {
        ellipse(
            x,
            y,
            lcx - side * gap * 0.5,
            lcy + gap * 0.5,
            lrx - gap * 0.5,
            lry - gap * 0.5,
            0.03,
        )
    } else {
        1.0
    };
    let tissue = lung * collapsed;

    // Vessel markings and hila.
    let mut markings = 0.0f32;
    for v in vessels {
        if (v.ax < 0.0) != (x < 0.0) {
            continue;
        }
        let (dist, t) = segment_distance(x, y, v.ax, v.ay, v.bx, v.by);
        let width = v.width * (1.0 - 0.7 * t);
        markings += smoothstep(width, width * 0.3, dist) * (1.0 - 0.6 * t);
    }
    let hilum = ellipse(
        x,
        y,
        side * (a.lung_center_x - a.lung_half_width * 0.55),
        -0.02,
        0.07,
        0.1,
        0.4,
    );
    let lung_texture = value_noise(a.vessel_seed, x, y, 9.0) - 0.5;

    // Airspace filling and extra density from findings, accumulated over lesions.
    let mut keep_air = 1.0f32;
    let mut extra = 0.0f32;
    for lesion in lesions {
        let (fill, add) = lesion_at(shape, lesion, seed, x, y, side, lung_shape);
        keep_air *= 1.0 - fill.clamp(0.0, 1.0);
        extra += add;
    }
    let air = shape.air * lung * keep_air;
    let pneumothorax_lucency = 0.12 * lung * (1.0 - collapsed);
    d += -air - pneumothorax_lucency
        + tissue * keep_air * (0.14 * markings.min(1.5) * shape.markings + 0.05 * lung_texture)
        + 0.22 * hilum * medial
        + 0.2 * heart * body
        + extra;

    // Trachea and gastric bubble.
    let trachea = smoothstep(0.045, 0.03, x.abs()) * smoothstep(-0.15, -0.3, y) * smoothstep(-1.0, -0.9, y);
    d -= 0.3 * trachea;
    if a.gastric_bubble {
        let bubble = ellipse(
            x,
            y,
            a.lung_center_x + 0.05,
            shape.dome_y(a.lung_center_x) + 0.1,
            0.11,
            0.06,
            0.2,
        );
        d -= 0.35 * bubble * (1.0 - heart);
    }
    if a.female {
        let breast = ellipse(x, y, side * (a.lung_center_x + 0.1), 0.55, 0.33, 0.22, 0.2);
        d += 0.15 * breast * smoothstep(0.35, 0.5, y);
    }

    // Bones: spine, posterior ribs, clavicles.
    let spine = smoothstep(0.08, 0.06, x.abs()) * body;
    let mut bone = 0.12 * spine;
    let ax = x.abs();
    if ax < a.thorax_half_width * 0.98 && ax > 0.06 {
        for k in 0..10 {
            let yk = a.rib_offset + k as f32 * a.rib_spacing - 0.35 * ax + 0.55 * ax * ax;
            let dist = (y - yk).abs();
            let rib = smoothstep(0.03, 0.018, dist);
            bone += 0.12 * rib * smoothstep(1.0, 0.9, body_r);
        }
        let clavicle_y = -0.62 - 0.18 * ax + 0.12 * ax * ax + a.rib_offset * 0.1 + 0.08;
        let clavicle = smoothstep(0.04, 0.025, (y - clavicle_y).abs()) * smoothstep(0.72, 0.6, ax);
        bone += 0.3 * clavicle;
    }
    d + bone
}

/// One lesion's contribution at a point: (fraction of lung air replaced, extra density).
fn lesion_at(shape: &Shape, lesion: &Lesion, seed: u64, x: f32, y: f32, side: f32, lung_shape: f32) -> (f32, f32) {
    let a = &shape.a;
    let same_side = |s: f32| if (s < 0.0) == (side < 0.0) { 1.0 } else { 0.0 };
    match *lesion {
        Lesion::Atelectasis {
            side: s,
            y: y0,
            half_thickness,
            tilt,
            fill,
            ..
        } => {
            let (lcx, ..) = shape.lung_ellipse(s);
            let centre = y0 - shape.dome_lift[side_index(s)] + tilt * (x - lcx);
            let band = smoothstep(half_thickness, half_thickness * 0.6, (y - centre).abs());
            (same_side(s) * band * fill, 0.0)
        }
        Lesion::Effusion {
            side: s,
            level,
            meniscus,
        } => {
            let (lcx, _, lrx, _) = shape.lung_ellipse(s);
            // Distance from the medial lung edge, 0..1 towards the chest wall.
            let lateral = ((x * s - (lcx * s - lrx)) / (2.0 * lrx)).clamp(0.0, 1.2);
            let surface = shape.dome_y(lcx) - level - meniscus * lateral * lateral;
            let fluid = smoothstep(-0.02, 0.03, y - surface) * same_side(s);
            (fluid, 0.12 * fluid * lung_shape)
        }
        Lesion::Infiltration { ref patches } => {
            let mut fill = 0.0f32;
            for (i, p) in patches.iter().enumerate() {
                let mottle = 0.6 + 0.8 * value_noise(seed ^ i as u64, x, y, 14.0);
                fill = fill.max(ellipse(x, y, p.x, p.y, p.radius, p.radius, 0.5) * p.fill * mottle);
            }
            (fill, 0.0)
        }
        Lesion::Mass {
            x: mx,
            y: my,
            radius,
            density,
        } => {
            let lobe = ellipse(
                x,
                y,
                mx + radius * 0.35,
                my - radius * 0.25,
                radius * 0.7,
                radius * 0.7,
                0.12,
            );
            let m = ellipse(x, y, mx, my, radius, radius * 0.9, 0.1).max(lobe);
            (m, density * m)
        }
        Lesion::Nodule {
            x: nx,
            y: ny,
            radius,
            density,
        } => {
            let m = ellipse(x, y, nx, ny, radius, radius, 0.15);
            (m, density * m)
        }
        Lesion::Pneumonia {
            x: px,
            y: py,
            rx,
            ry,
            fill,
        } => {
            let edge = 0.35 * (value_noise(seed ^ 0x9e, x, y, 7.0) - 0.5);
            let dx = (x - px) / rx;
            let dy = (y - py) / ry;
            let m = smoothstep(1.3, 0.5, (dx * dx + dy * dy).sqrt() + edge);
            (m * fill, 0.05 * m)
        }
        Lesion::Consolidation {
            side: s,
            top,
            height,
            fill,
        } => {
            let (lcx, ..) = shape.lung_ellipse(s);
            // Sharp fissure on top, fading lower edge.
            let fissure = top + 0.1 * (x - lcx) * s;
            let m = smoothstep(-0.01, 0.01, y - fissure) * smoothstep(height + 0.08, height - 0.04, y - fissure);
            let m = m * same_side(s);
            (m * fill, 0.1 * m * lung_shape)
        }
        Lesion::Edema { fill, kerley_lines } => {
            let hx = side * (a.lung_center_x - a.lung_half_width * 0.45);
            let haze = ellipse(x, y, hx, 0.02, a.lung_half_width * 0.85, 0.38, 0.7);
            let mut kerley = 0.0f32;
            let (lcx, _, lrx, _) = shape.lung_ellipse(side);
            let outer = lcx + side * lrx;
            for k in 0..kerley_lines {
                let ky = shape.dome_y(outer - side * 0.1) - 0.06 - 0.05 * k as f32;
                let along = side * (outer - x);
                kerley = kerley.max(
                    smoothstep(0.022, 0.01, (y - ky).abs())
                        * smoothstep(0.2, 0.14, along)
                        * smoothstep(0.02, 0.05, along),
                );
            }
            ((haze * fill).max(kerley * 0.8), 0.0)
        }
        Lesion::Emphysema { .. } => (0.0, 0.0),
        Lesion::Fibrosis { fill, period, height } => {
            let base = shape.dome_y(side * a.lung_center_x);
            let zone = smoothstep(base - height, base - height + 0.15, y);
            let warp = 0.4 * value_noise(seed ^ 0xf1, x, y, 6.0);
            let tri = |v: f32| ((v / period + warp).fract() - 0.5).abs() * 2.0;
            let net = smoothstep(0.65, 0.9, tri(x).max(tri(y + 0.3 * x)));
            (zone * fill * (0.35 + 0.65 * net), 0.0)
        }
        Lesion::PleuralThickening { side: s, thickness } => {
            let (lcx, lcy, lrx, lry) = shape.lung_ellipse(s);
            let dx = (x - lcx) / lrx;
            let dy = (y - lcy) / lry;
            let r = (dx * dx + dy * dy).sqrt();
            let rel = thickness / lrx;
            // Lateral wall and apex only: medially the pleura meets the mediastinum.
            let lateral = smoothstep(-0.3, 0.1, dx * s).max(smoothstep(-0.4, -0.6, dy));
            let band = smoothstep(1.0 - rel - 0.05, 1.0 - rel + 0.02, r) * smoothstep(1.08, 1.0, r);
            let m = band * lateral * same_side(s);
            (m, 0.12 * m)
        }
        Lesion::Hernia { x: hx, y: hy, radius } => {
            let sac = ellipse(x, y, hx, hy, radius * 1.1, radius, 0.12);
            let gas =
                ellipse(x, y, hx, hy, radius * 0.85, radius * 0.78, 0.15) * smoothstep(0.01, -0.01, y - hy - 0.01);
            (sac, 0.18 * sac - 0.7 * gas)
        }
        Lesion::Cardiomegaly { .. } | Lesion::Pneumothorax { .. } => {
            // Drawn through the shape (heart size, collapsed lung) rather than as density.
            let _ = lung_shape;
            (0.0, 0.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn normal(seed: u64) -> Anatomy {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = Anatomy::sample(&mut rng, false);
        a.for_image(&mut rng, false)
    }

    #[test]
    fn every_nih_finding_has_a_lesion_with_its_own_label() {
        let a = normal(1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for label in crate::data::labels::NIH_FINDINGS {
            let lesion = Lesion::sample(label, &a, &mut rng).unwrap_or_else(|| panic!("no lesion for {label}"));
            assert_eq!(lesion.label(), label);
            let json = serde_json::to_value(&lesion).unwrap();
            assert_eq!(json["finding"], label, "generator.json must name findings as NIH does");
        }
        assert!(Lesion::sample("No Finding", &a, &mut rng).is_none());
    }

    #[test]
    fn render_is_deterministic_and_sized() {
        let p = Phantom {
            anatomy: normal(3),
            lesions: vec![],
            noise_seed: 9,
        };
        let one = render(&p, 48);
        assert_eq!(one.len(), 48 * 48);
        assert_eq!(one, render(&p, 48));
    }

    #[test]
    fn lungs_are_darker_than_the_heart_and_air_outside_is_darkest() {
        let mut a = normal(4);
        a.noise = 0.0;
        let p = Phantom {
            anatomy: a.clone(),
            lesions: vec![],
            noise_seed: 1,
        };
        let n = 100;
        let img = render(&p, n as u32);
        let at = |x: f32, y: f32| {
            let col = ((x + 1.0) / 2.0 * n as f32) as usize;
            let row = ((y + 1.0) / 2.0 * n as f32) as usize;
            img[row * n + col]
        };
        let lung = at(-a.lung_center_x, -0.3);
        let heart = at(a.heart_center_x + 0.05, a.heart_center_y + 0.05);
        let corner = at(-0.98, -0.98);
        assert!(lung + 30 < heart, "lung {lung} vs heart {heart}");
        assert!(corner < lung, "outside air {corner} vs lung {lung}");
    }
}

//! The chest phantom: a patient's anatomy and each NIH finding as parameters, and the renderer
//! that turns them into an 8-bit frontal radiograph-like image.
//!
//! Rendering works in an attenuation ("density") domain: soft tissue is 1, lung air lowers it,
//! bone and opacities raise it; brightness is `1 - exp(-exposure * density)` as on a film, then
//! noise is added. Coordinates are `x, y` in `[-1, 1]`, image left = patient right, `y` down.
//! Every finding is drawn large and contrasted enough to stay visible at 64×64 pixels.

mod render;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use render::render;

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

//! Drawing a [`Phantom`]: anatomy after the findings' global effects, the density of every
//! structure and lesion at a point, and the film response with noise.

use super::*;

/// Anatomy after the global effects of findings (volume loss, enlargement, over-inflation).
pub(super) struct Shape {
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

pub(super) fn side_index(side: f32) -> usize {
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

pub(super) fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Soft inside-mask of an ellipse: 1 inside, 0 outside, blurred by `soft` (in radius units).
pub(super) fn ellipse(x: f32, y: f32, cx: f32, cy: f32, rx: f32, ry: f32, soft: f32) -> f32 {
    let dx = (x - cx) / rx;
    let dy = (y - cy) / ry;
    let r = (dx * dx + dy * dy).sqrt();
    smoothstep(1.0 + soft, 1.0 - soft, r)
}

/// Distance from `p` to the segment `a`–`b`, and the position along it (0..1).
pub(super) fn segment_distance(px: f32, py: f32, ax: f32, ay: f32, bx: f32, by: f32) -> (f32, f32) {
    let (vx, vy) = (bx - ax, by - ay);
    let t = (((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)).clamp(0.0, 1.0);
    let (dx, dy) = (px - ax - t * vx, py - ay - t * vy);
    ((dx * dx + dy * dy).sqrt(), t)
}

pub(super) fn hash(mut v: u64) -> u64 {
    // SplitMix64 finaliser: a cheap, well-mixed integer hash for noise lattices.
    v = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    v = (v ^ (v >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    v = (v ^ (v >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    v ^ (v >> 31)
}

pub(super) fn lattice(seed: u64, ix: i32, iy: i32) -> f32 {
    let h = hash(seed ^ ((ix as u32 as u64) << 32 | iy as u32 as u64));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Smooth value noise in [0, 1] with feature size `1 / frequency`.
pub(super) fn value_noise(seed: u64, x: f32, y: f32, frequency: f32) -> f32 {
    let (fx, fy) = (x * frequency + 100.0, y * frequency + 100.0);
    let (ix, iy) = (fx.floor() as i32, fy.floor() as i32);
    let (tx, ty) = (fx - ix as f32, fy - iy as f32);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let top = lattice(seed, ix, iy) * (1.0 - sx) + lattice(seed, ix + 1, iy) * sx;
    let bottom = lattice(seed, ix, iy + 1) * (1.0 - sx) + lattice(seed, ix + 1, iy + 1) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// A vessel: a tapering line from the hilum into the lung.
pub(super) struct Vessel {
    ax: f32,
    ay: f32,
    bx: f32,
    by: f32,
    width: f32,
}

pub(super) fn vessels(shape: &Shape) -> Vec<Vessel> {
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

pub(super) fn density_at(shape: &Shape, lesions: &[Lesion], vessels: &[Vessel], seed: u64, x: f32, y: f32) -> f32 {
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
pub(super) fn lesion_at(
    shape: &Shape,
    lesion: &Lesion,
    seed: u64,
    x: f32,
    y: f32,
    side: f32,
    lung_shape: f32,
) -> (f32, f32) {
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

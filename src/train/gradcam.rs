//! Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
//! Gradient-based Localization"): where in the image the evidence for one label's logit lies, and
//! its overlay on the X-ray as a PNG.
//!
//! Burn's autodiff frees the gradients of intermediate tensors during the backward pass, so the
//! feature map's gradient cannot be read after a full forward. Instead the backbone runs without
//! autodiff, its feature map becomes an autodiff leaf that requires grad, and the classifier's
//! head (pooling, optional hidden layer, output layer; weights read from the model) runs on it.
//!
//! A map can be empty: when no location's weighted activations add up to a positive score for the
//! label (every channel the label reads with a positive weight is silent, or the gradient is
//! zero), the ReLU leaves nothing. Such a map is reported as empty rather than drawn as if it
//! were one, and the default map shown is the most probable label's whose map is not empty.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::activation::relu;
use image::{GrayImage, Rgb, RgbImage};

use crate::model::Classifier;

/// Relative tolerance below which a map counts as empty: its peak must exceed this fraction of
/// the map's scale (the largest `Σ_c |α_c · A_c|` over its locations, what the peak would be if
/// no term cancelled). f32 sums over the up to ~1024 channels of our backbones carry rounding of
/// up to about `C · ε ≈ 1e-4` of that scale, so a smaller peak cannot be told from rounding, and
/// scaling it to `[0, 1]` would paint noise at full heat.
pub const EMPTY_TOLERANCE: f32 = 1e-4;

/// A heat map with values in `[0, 1]`, row-major `height × width`, scaled per map: 1 is this
/// map's own peak, so values compare regions within one map, not across labels or images.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
    /// The raw peak of `ReLU(Σ_c α_c · A_c)` at the feature map's resolution, before scaling
    /// (units of logit per activation; 0 when nothing is positive).
    pub peak: f32,
    /// No region raises the label's score: the map is all zero after the ReLU, or its peak is
    /// within [`EMPTY_TOLERANCE`] of its scale; `values` are then all zero.
    pub empty: bool,
}

impl HeatMap {
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.values[y * self.width + x]
    }

    /// Bilinear resampling (pixel centres aligned, like `align_corners = false`).
    pub fn resized(&self, width: usize, height: usize) -> HeatMap {
        HeatMap {
            width,
            height,
            values: bilinear(&self.values, self.width, self.height, width, height),
            ..*self
        }
    }

    /// An empty map of `width × height`.
    fn empty(width: usize, height: usize, peak: f32) -> HeatMap {
        HeatMap {
            width,
            height,
            values: vec![0.0; width * height],
            peak,
            empty: true,
        }
    }
}

/// Whether a map with this raw `peak` (after the ReLU) and `scale` (the largest `Σ_c |α_c·A_c|`)
/// is empty: nothing positive, a peak within [`EMPTY_TOLERANCE`] of the scale, or not finite.
pub fn is_empty(peak: f32, scale: f32) -> bool {
    let tolerance = if scale.is_finite() {
        EMPTY_TOLERANCE * scale
    } else {
        0.0
    };
    !(peak.is_finite() && peak > tolerance)
}

/// Weights of the layers after the feature map: `hidden` (simple-cnn's dense layer, with ReLU)
/// and the output layer, as `[inputs, outputs]` weights and `[outputs]` biases.
#[derive(Debug, Clone)]
pub struct Head {
    hidden: Option<Dense>,
    output: Dense,
}

#[derive(Debug, Clone)]
struct Dense {
    weight: TensorData,
    bias: Option<TensorData>,
}

#[derive(Default)]
struct HeadCollector {
    path: Vec<String>,
    found: Vec<(String, TensorData)>,
}

impl ModuleVisitor for HeadCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Only the top-level head layers matter; copying every backbone weight would be wasteful.
        if matches!(self.path.first().map(String::as_str), Some("head" | "hidden")) && self.path.len() == 2 {
            self.found.push((self.path.join("."), param.val().into_data()));
        }
    }
}

impl Head {
    /// Copies the head's weights out of `model`; `None` when it has no output layer `head`.
    pub fn from_model(model: &Classifier) -> Option<Head> {
        let mut collector = HeadCollector::default();
        model.visit(&mut collector);
        let take = |name: &str| collector.found.iter().find(|(p, _)| p == name).map(|(_, d)| d.clone());
        let dense = |layer: &str| {
            take(&format!("{layer}.weight")).map(|weight| Dense {
                weight,
                bias: take(&format!("{layer}.bias")),
            })
        };
        Some(Head {
            hidden: dense("hidden"),
            output: dense("head")?,
        })
    }
}

fn dense_forward(x: Tensor<2>, layer: &Dense, device: &Device) -> Tensor<2> {
    let weight = Tensor::<2>::from_data(layer.weight.clone(), device);
    let out = x.matmul(weight);
    match &layer.bias {
        Some(bias) => out + Tensor::<1>::from_data(bias.clone(), device).unsqueeze_dim(0),
        None => out,
    }
}

/// Grad-CAM of logit `label` for the first image of `features` (`[N, C, h, w]`, the last conv
/// map), upsampled bilinearly to `width × height` and scaled to `[0, 1]` by its own peak (all
/// zeros, and marked empty, when no location speaks for the label; see [`is_empty`]).
pub fn grad_cam(head: &Head, features: Tensor<4>, label: usize, width: usize, height: usize) -> HeatMap {
    let features = features.narrow(0, 0, 1);
    let [_, channels, h, w] = features.dims();
    let device = features.device();
    let leaf = Tensor::<4>::from_inner(features.clone()).require_grad();
    let mut x = leaf.clone().mean_dim(3).mean_dim(2).reshape([1, channels]);
    if let Some(hidden) = &head.hidden {
        x = relu(dense_forward(x, hidden, &device));
    }
    let logits = dense_forward(x, &head.output, &device);
    let score = logits.narrow(1, label, 1).sum();
    let grads = score.backward();
    let Some(gradient) = leaf.grad(&grads) else {
        return HeatMap::empty(width, height, 0.0);
    };
    // α_c: the gradient averaged over the map; the map is ReLU(Σ_c α_c · A_c).
    let alpha = gradient.mean_dim(3).mean_dim(2);
    let weighted = features * alpha;
    let scale = weighted.clone().abs().sum_dim(1).max().into_scalar::<f32>();
    let cam = relu(weighted.sum_dim(1));
    let coarse: Vec<f32> = cam.into_data().iter::<f32>().collect();
    let peak = coarse.iter().copied().fold(0.0f32, f32::max);
    if is_empty(peak, scale) {
        return HeatMap::empty(width, height, peak);
    }
    let mut values = bilinear(&coarse, w, h, width, height);
    normalise(&mut values);
    HeatMap {
        width,
        height,
        values,
        peak,
        empty: false,
    }
}

/// The Grad-CAMs looked at to pick the one shown by default: labels in probability order, up to
/// and including the first whose map is not empty (every label's when all are empty).
#[derive(Debug, Clone)]
pub struct GradCamSearch {
    /// (label index, map), most probable first.
    pub computed: Vec<(usize, HeatMap)>,
}

impl GradCamSearch {
    /// Computes maps for `order`'s labels in turn with `map_of`, stopping after the first
    /// non-empty one, so a typical image costs one map, not one per label.
    pub fn run<E>(order: &[usize], mut map_of: impl FnMut(usize) -> Result<HeatMap, E>) -> Result<Self, E> {
        let mut computed = Vec::new();
        for &label in order {
            let map = map_of(label)?;
            let found = !map.empty;
            computed.push((label, map));
            if found {
                break;
            }
        }
        Ok(GradCamSearch { computed })
    }

    /// The map shown: the most probable non-empty one, else (all empty) the most probable.
    pub fn chosen(&self) -> &(usize, HeatMap) {
        let last = self.computed.last().expect("a search covers at least one label");
        if last.1.empty {
            &self.computed[0]
        } else {
            last
        }
    }

    /// More probable labels passed over because their maps are empty (the chosen one excluded).
    pub fn skipped(&self) -> Vec<usize> {
        let chosen = self.chosen().0;
        self.computed
            .iter()
            .filter(|(label, map)| map.empty && *label != chosen)
            .map(|(label, _)| *label)
            .collect()
    }

    /// The sentence to show beside the chosen map, if anything needs saying: which more probable
    /// labels were passed over, or that every map is empty. `names` are the label names.
    pub fn note(&self, names: &[String]) -> Option<String> {
        let (chosen, map) = self.chosen();
        let skipped: Vec<&str> = self.skipped().iter().map(|&i| names[i].as_str()).collect();
        if map.empty && skipped.is_empty() {
            return Some(format!(
                "{}: its Grad-CAM is empty (zero after the ReLU), so the overlay is the image alone, hatched.",
                empty_words(&names[*chosen])
            ));
        }
        if map.empty {
            return Some(format!(
                "{}: every label's Grad-CAM is empty (zero after the ReLU). Shown: the most probable, {}, \
                 as the image alone, hatched.",
                empty_words("any label"),
                names[*chosen]
            ));
        }
        if skipped.is_empty() {
            return None;
        }
        Some(format!(
            "Showing {}, the most probable label whose Grad-CAM is not empty. {}: {} empty.",
            names[*chosen],
            empty_words(&skipped.join(", ")),
            if skipped.len() == 1 {
                "its map is"
            } else {
                "their maps are"
            }
        ))
    }
}

/// The words for an empty map: "No region raises the score for {what} on this image".
pub fn empty_words(what: &str) -> String {
    format!("No region raises the score for {what} on this image")
}

/// Scales to `[0, 1]` by the maximum (the ReLU already made the minimum 0 or more).
fn normalise(values: &mut [f32]) {
    let max = values.iter().copied().filter(|v| v.is_finite()).fold(0.0f32, f32::max);
    for v in values.iter_mut() {
        *v = if max > 0.0 && v.is_finite() {
            (*v / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
    }
}

fn bilinear(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    // Source coordinate of a destination pixel centre, and its two neighbours and weight.
    let axis = |d: usize, dn: usize, sn: usize| {
        let s = ((d as f32 + 0.5) * sn as f32 / dn as f32 - 0.5).clamp(0.0, (sn - 1) as f32);
        let lo = s.floor() as usize;
        (lo, (lo + 1).min(sn - 1), s - lo as f32)
    };
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let (y0, y1, fy) = axis(y, dh, sh);
        for x in 0..dw {
            let (x0, x1, fx) = axis(x, dw, sw);
            let top = src[y0 * sw + x0] * (1.0 - fx) + src[y0 * sw + x1] * fx;
            let bottom = src[y1 * sw + x0] * (1.0 - fx) + src[y1 * sw + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Blue → cyan → green → yellow → red for 0..1 (a "jet"-like ramp built from five stops).
fn colour(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0, 0.0],
    ];
    let s = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (s.floor() as usize).min(STOPS.len() - 2);
    let f = s - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f)
}

/// Opacity of the colour ramp at full heat; it grows with √heat, so cold regions show the X-ray.
const MAX_ALPHA: f32 = 0.6;

/// One overlay pixel: heat `t` in `[0, 1]` over gray level `g` in `[0, 1]`.
fn heat_pixel(g: f32, t: f32) -> [u8; 3] {
    let alpha = MAX_ALPHA * t.sqrt();
    let c = colour(t);
    std::array::from_fn(|i| ((g * (1.0 - alpha) + c[i] * alpha) * 255.0).round() as u8)
}

/// Colour of the empty-map mark: amber, absent from the blue → red ramp's blends over gray.
const EMPTY_MARK: [f32; 3] = [0.96, 0.62, 0.04];

/// Marks an overlay as empty: an amber frame and amber diagonal hatching, so an empty map is
/// never mistaken for the plain X-ray a cold map shows. Sizes follow the image's shorter side.
fn mark_empty(out: &mut RgbImage) {
    let (width, height) = out.dimensions();
    let side = width.min(height);
    let period = (side / 12).max(6);
    let stroke = (side / 96).max(1);
    let frame = (side / 64).max(1);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let edge = x < frame || y < frame || x + frame >= width || y + frame >= height;
        let alpha = if edge {
            1.0
        } else if (x + y) % period < stroke {
            0.5
        } else {
            continue;
        };
        *pixel = Rgb(std::array::from_fn(|i| {
            (pixel.0[i] as f32 * (1.0 - alpha) + EMPTY_MARK[i] * 255.0 * alpha).round() as u8
        }));
    }
}

/// Heat over the X-ray: the colour ramp alpha-blended onto the gray image, more opaque where the
/// heat is higher (so cold regions show the X-ray itself); an empty map gives the X-ray hatched
/// (see `mark_empty`). The map is resampled to the image's size; the PNG has the image's size.
pub fn overlay_png(gray: &GrayImage, heatmap: &HeatMap) -> Vec<u8> {
    let (width, height) = gray.dimensions();
    let heat = heatmap.resized(width as usize, height as usize);
    let mut out = RgbImage::new(width, height);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let g = gray.get_pixel(x, y).0[0] as f32 / 255.0;
        *pixel = Rgb(heat_pixel(g, heat.at(x as usize, y as usize)));
    }
    if heatmap.empty {
        mark_empty(&mut out);
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(out)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding a PNG into memory cannot fail");
    bytes
}

/// Steps of the colour scale: fine enough that neighbouring steps look continuous.
const SCALE_STEPS: usize = 64;

/// The overlays' colour scale as an SVG bar: each step is exactly the colour [`overlay_png`]
/// gives that heat over a mid-gray pixel, with its ends labelled (0, and 1 = the map's own peak,
/// since every map is scaled by its peak).
pub fn scale_svg() -> String {
    const LEFT: f32 = 8.0;
    const BAR_W: f32 = 284.0;
    let step = BAR_W / SCALE_STEPS as f32;
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"300\" height=\"38\" viewBox=\"0 0 300 38\" \
         font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\
         <title>Grad-CAM colour scale: heat from 0 (no evidence; the X-ray shows through) to 1 (this map's \
         own peak), as blended over a mid-gray pixel</title>",
    );
    for i in 0..SCALE_STEPS {
        let [r, g, b] = heat_pixel(0.5, (i as f32 + 0.5) / SCALE_STEPS as f32);
        svg.push_str(&format!(
            "<rect x=\"{x:.2}\" y=\"2\" width=\"{w:.2}\" height=\"14\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>",
            x = LEFT + step * i as f32,
            // Overlap by a hair so no seams show between steps.
            w = step + 0.3,
        ));
    }
    svg.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"2\" width=\"{BAR_W}\" height=\"14\" fill=\"none\" stroke=\"#888\"/>\
         <text x=\"{LEFT}\" y=\"30\">0</text>\
         <text x=\"{mid}\" y=\"30\" text-anchor=\"middle\">0.5</text>\
         <text x=\"{right}\" y=\"30\" text-anchor=\"end\">1 = this map's peak</text></svg>",
        mid = LEFT + BAR_W / 2.0,
        right = LEFT + BAR_W,
    ));
    svg
}

/// Helpers for tests of Grad-CAM's callers.
#[cfg(test)]
pub(crate) mod test_utils {
    use super::HeatMap;

    /// A one-pixel map, empty or at full heat: for tests of how maps are chosen and kept.
    pub(crate) fn map(empty: bool) -> HeatMap {
        HeatMap {
            width: 1,
            height: 1,
            values: vec![if empty { 0.0 } else { 1.0 }],
            peak: if empty { 0.0 } else { 0.5 },
            empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_utils::map;
    use super::*;
    use burn::prelude::Device;

    fn dense(weight: Vec<f32>, shape: [usize; 2]) -> Dense {
        Dense {
            weight: TensorData::new(weight, shape),
            bias: None,
        }
    }

    #[test]
    fn heat_lies_where_the_weighted_channel_is_active() {
        // Two channels on a 4×4 map: channel 0 is active in the top-left quadrant, channel 1 in
        // the bottom-right. Label 0 reads only channel 0, so its heat must sit top-left.
        let mut map = vec![0.0f32; 2 * 16];
        for y in 0..2 {
            for x in 0..2 {
                map[y * 4 + x] = 1.0;
                map[16 + (y + 2) * 4 + x + 2] = 1.0;
            }
        }
        let features = Tensor::<4>::from_data(TensorData::new(map, [1, 2, 4, 4]), &Device::flex());
        let head = Head {
            hidden: None,
            output: dense(vec![1.0, 0.0, 0.0, 1.0], [2, 2]),
        };
        let heat = grad_cam(&head, features.clone(), 0, 32, 32);
        assert_eq!((heat.width, heat.height, heat.values.len()), (32, 32, 1024));
        let quadrant = |qx: usize, qy: usize| -> f32 {
            (0..16)
                .flat_map(|y| (0..16).map(move |x| (x + 16 * qx, y + 16 * qy)))
                .map(|(x, y)| heat.at(x, y))
                .sum::<f32>()
        };
        assert!(quadrant(0, 0) > 100.0, "top-left {}", quadrant(0, 0));
        // Bilinear upsampling bleeds a little past the quadrant's edge, but no further.
        assert!(
            quadrant(1, 1) < 0.05 * quadrant(0, 0),
            "bottom-right {}",
            quadrant(1, 1)
        );
        assert!((20..32).all(|y| (20..32).all(|x| heat.at(x, y) == 0.0)));
        assert!(heat.values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(heat.values.iter().copied().fold(0.0, f32::max), 1.0);
        // α_0 = 1/16 (the mean's gradient), so the raw peak is A_0 · α_0 = 1/16.
        assert!(!heat.empty && (heat.peak - 1.0 / 16.0).abs() < 1e-6, "{}", heat.peak);

        let other = grad_cam(&head, features, 1, 32, 32);
        assert!(other.at(28, 28) > 0.9 && other.at(3, 3) == 0.0);
    }

    #[test]
    fn a_label_with_negative_evidence_everywhere_is_cold() {
        let features = Tensor::<4>::ones([1, 1, 2, 2], &Device::flex());
        let head = Head {
            hidden: None,
            output: dense(vec![-1.0], [1, 1]),
        };
        let heat = grad_cam(&head, features, 0, 8, 8);
        assert!(heat.values.iter().all(|&v| v == 0.0));
        assert!(heat.empty && heat.peak == 0.0, "{heat:?}");
    }

    #[test]
    fn a_label_the_head_ignores_is_empty_and_so_is_a_cancelled_residue() {
        let features = Tensor::<4>::ones([1, 2, 2, 2], &Device::flex());
        let ignored = Head {
            hidden: None,
            output: dense(vec![0.0, 0.0], [2, 1]),
        };
        let heat = grad_cam(&ignored, features.clone(), 0, 4, 4);
        assert!(
            heat.empty && heat.peak == 0.0 && heat.values == vec![0.0; 16],
            "{heat:?}"
        );

        // Two identical channels read with weights 1 and -(1 - 1e-6): the sum is a positive
        // residue of about 2.5e-7 against terms of 0.25, rounding-sized, so it counts as empty
        // instead of being scaled up to full heat.
        let cancelled = Head {
            hidden: None,
            output: dense(vec![1.0, -(1.0 - 1e-6)], [2, 1]),
        };
        let heat = grad_cam(&cancelled, features, 0, 4, 4);
        assert!(heat.peak > 0.0 && heat.peak < 1e-6, "{}", heat.peak);
        assert!(heat.empty && heat.values.iter().all(|&v| v == 0.0), "{heat:?}");
    }

    #[test]
    fn emptiness_is_relative_to_the_maps_scale() {
        let cases = [
            (0.0, 0.0, true, "nothing at all"),
            (0.0, 5.0, true, "all negative: zero after the ReLU"),
            (1e-9, 1.0, true, "below the tolerance"),
            (2e-4, 1.0, false, "above the tolerance"),
            (1e-9, 1e-6, false, "small but not relative to its own scale"),
            (f32::NAN, 1.0, true, "not finite"),
            (f32::INFINITY, f32::INFINITY, true, "overflowed"),
        ];
        for (peak, scale, empty, why) in cases {
            assert_eq!(is_empty(peak, scale), empty, "{why}: peak {peak}, scale {scale}");
        }
    }

    #[test]
    fn the_search_stops_at_the_first_non_empty_map_and_says_what_it_skipped() {
        let names: Vec<String> = ["Hernia", "Mass", "Effusion", "Nodule"].map(String::from).to_vec();
        let mut asked = Vec::new();
        let search = GradCamSearch::run(&[0, 1, 2, 3], |label| {
            asked.push(label);
            Ok::<_, ()>(map(label < 2))
        })
        .unwrap();
        assert_eq!(asked, [0, 1, 2], "no map is computed past the first non-empty one");
        assert_eq!(search.chosen().0, 2);
        assert_eq!(search.skipped(), [0, 1]);
        let note = search.note(&names).unwrap();
        assert!(
            note.starts_with("Showing Effusion, the most probable label whose Grad-CAM is not empty.")
                && note.contains("No region raises the score for Hernia, Mass on this image: their maps are empty."),
            "{note}"
        );

        let first = GradCamSearch::run(&[3, 0], |label| Ok::<_, ()>(map(label == 0))).unwrap();
        assert_eq!((first.chosen().0, first.computed.len()), (3, 1));
        assert_eq!(
            first.note(&names),
            None,
            "nothing to say when the top label's map is shown"
        );

        let all_empty = GradCamSearch::run(&[1, 0, 3], |_| Ok::<_, ()>(map(true))).unwrap();
        assert_eq!((all_empty.chosen().0, all_empty.skipped()), (1, vec![0, 3]));
        let note = all_empty.note(&names).unwrap();
        assert!(
            note.contains("No region raises the score for any label on this image")
                && note.contains("Shown: the most probable, Mass"),
            "{note}"
        );

        let asked_for = GradCamSearch::run(&[0], |_| Ok::<_, ()>(map(true))).unwrap();
        let note = asked_for.note(&names).unwrap();
        assert!(
            note.starts_with("No region raises the score for Hernia on this image: its Grad-CAM is empty"),
            "{note}"
        );
        let failed = GradCamSearch::run(&[0, 1], |label| if label == 1 { Err("boom") } else { Ok(map(true)) });
        assert_eq!(failed.unwrap_err(), "boom");
    }

    #[test]
    fn an_empty_overlay_is_hatched_not_the_plain_image() {
        let gray = GrayImage::from_pixel(96, 96, image::Luma([100]));
        let cold = HeatMap {
            width: 2,
            height: 2,
            values: vec![0.0; 4],
            peak: 0.3,
            empty: false,
        };
        let decode = |png: Vec<u8>| image::load_from_memory(&png).unwrap().to_rgb8();
        let plain = decode(overlay_png(&gray, &cold));
        assert!(
            plain.pixels().all(|p| p.0 == [100, 100, 100]),
            "a cold map shows the X-ray"
        );
        let marked = decode(overlay_png(&gray, &HeatMap::empty(2, 2, 0.0)));
        let amber = |p: &Rgb<u8>| p.0[0] > p.0[1] && p.0[1] > p.0[2] + 40;
        assert!(amber(marked.get_pixel(0, 50)), "framed: {:?}", marked.get_pixel(0, 50));
        // Hatch lines run where (x + y) is a multiple of the period (96 / 12 = 8); between them
        // the X-ray shows unchanged.
        assert!(
            amber(marked.get_pixel(40, 40)),
            "hatched: {:?}",
            marked.get_pixel(40, 40)
        );
        assert_eq!(marked.get_pixel(40, 43).0, [100, 100, 100]);
        let hatched = marked.pixels().filter(|p| amber(p)).count();
        assert!(
            hatched > 96 * 96 / 16 && hatched < 96 * 96 / 2,
            "{hatched} amber pixels"
        );
    }

    #[test]
    fn the_scale_bar_has_the_overlays_colours_and_labelled_ends() {
        let svg = scale_svg();
        let fills: Vec<[u8; 3]> = svg
            .match_indices("fill=\"#")
            .map(|(at, _)| {
                let hex = &svg[at + 7..at + 13];
                std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            })
            .collect();
        assert_eq!(fills.len(), SCALE_STEPS);
        // The overlay of a left-to-right ramp over mid-gray paints the same colours, step by step.
        let ramp = HeatMap {
            width: SCALE_STEPS,
            height: 1,
            values: (0..SCALE_STEPS)
                .map(|i| (i as f32 + 0.5) / SCALE_STEPS as f32)
                .collect(),
            peak: 1.0,
            empty: false,
        };
        let gray = GrayImage::from_pixel(SCALE_STEPS as u32, 1, image::Luma([128]));
        let painted = image::load_from_memory(&overlay_png(&gray, &ramp)).unwrap().to_rgb8();
        for (i, fill) in fills.iter().enumerate() {
            let pixel = painted.get_pixel(i as u32, 0).0;
            assert!(
                (0..3).all(|c| fill[c].abs_diff(pixel[c]) <= 1),
                "step {i}: scale {fill:?}, overlay {pixel:?}"
            );
        }
        assert!(fills[0][2] > fills[0][0], "the cold end is bluish: {:?}", fills[0]);
        assert!(
            fills[SCALE_STEPS - 1][0] > 190 && fills[SCALE_STEPS - 1][2] < 100,
            "the hot end is red"
        );
        assert!(
            svg.contains(">0</text>") && svg.contains(">1 = this map's peak</text>"),
            "{svg}"
        );
    }

    #[test]
    fn bilinear_keeps_constants_and_interpolates_between_centres() {
        assert_eq!(bilinear(&[0.5; 4], 2, 2, 5, 3), vec![0.5; 15]);
        // 1×2 → 1×4: centres at source 0 and 1 map to -0.25, 0.25, 0.75, 1.25 → clamped.
        assert_eq!(bilinear(&[0.0, 1.0], 2, 1, 4, 1), vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn overlay_has_the_image_size_and_leaves_cold_pixels_gray() {
        let gray = GrayImage::from_pixel(10, 6, image::Luma([100]));
        let mut values = vec![0.0; 4];
        values[1] = 1.0;
        let png = overlay_png(
            &gray,
            &HeatMap {
                width: 2,
                height: 2,
                values,
                peak: 1.0,
                empty: false,
            },
        );
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (10, 6));
        assert_eq!(decoded.get_pixel(0, 5).0, [100, 100, 100]);
        let hot = decoded.get_pixel(9, 0).0;
        assert!(hot[0] > hot[2], "hot corner should be red: {hot:?}");
    }
}

//! Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
//! Gradient-based Localization"): where in the image the evidence for one label's logit lies, and
//! its overlay on the X-ray as a PNG.
//!
//! Burn's autodiff frees the gradients of intermediate tensors during the backward pass, so the
//! feature map's gradient cannot be read after a full forward. Instead the backbone runs without
//! autodiff, its feature map becomes an autodiff leaf that requires grad, and the classifier's
//! head (pooling, optional hidden layer, output layer; weights read from the model) runs on it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::activation::relu;
use image::{GrayImage, Rgb, RgbImage};

use crate::model::Classifier;

/// A heat map with values in `[0, 1]`, row-major `height × width`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
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
        }
    }
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
/// map), upsampled bilinearly to `width × height` and scaled to `[0, 1]` (all zeros when no
/// location speaks for the label).
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
        return HeatMap {
            width,
            height,
            values: vec![0.0; width * height],
        };
    };
    // α_c: the gradient averaged over the map; the map is ReLU(Σ_c α_c · A_c).
    let alpha = gradient.mean_dim(3).mean_dim(2);
    let cam = relu((features * alpha).sum_dim(1));
    let coarse: Vec<f32> = cam.into_data().iter::<f32>().collect();
    let mut values = bilinear(&coarse, w, h, width, height);
    normalise(&mut values);
    HeatMap { width, height, values }
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

/// Heat over the X-ray: the colour ramp alpha-blended onto the gray image, more opaque where the
/// heat is higher (so cold regions show the X-ray itself). The map is resampled to the image's
/// size; the PNG has the image's size.
pub fn overlay_png(gray: &GrayImage, heatmap: &HeatMap) -> Vec<u8> {
    const MAX_ALPHA: f32 = 0.6;
    let (width, height) = gray.dimensions();
    let heat = heatmap.resized(width as usize, height as usize);
    let mut out = RgbImage::new(width, height);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let g = gray.get_pixel(x, y).0[0] as f32 / 255.0;
        let t = heat.at(x as usize, y as usize);
        let alpha = MAX_ALPHA * t.sqrt();
        let c = colour(t);
        *pixel = Rgb(std::array::from_fn(|i| {
            ((g * (1.0 - alpha) + c[i] * alpha) * 255.0).round() as u8
        }));
    }
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(out)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding a PNG into memory cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
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
            },
        );
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (10, 6));
        assert_eq!(decoded.get_pixel(0, 5).0, [100, 100, 100]);
        let hot = decoded.get_pixel(9, 0).0;
        assert!(hot[0] > hot[2], "hot corner should be red: {hot:?}");
    }
}

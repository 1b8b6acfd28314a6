//! The one model type the engine uses: a backbone chosen by [`ModelSpec`], global average
//! pooling, dropout and a linear head with one logit per label.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::densenet::DenseNet;
use super::efficientnet::EfficientNet;
use super::layers::{global_average_pool, linear, scale_channels, TrainableCounter};
use super::mobilenet::MobileNetV2;
use super::resnet::ResNet;
use super::simple_cnn::{self, SimpleCnn};
use super::{Architecture, ModelSpec};

#[derive(Module, Debug)]
enum Backbone {
    SimpleCnn(SimpleCnn),
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
    DenseNet(DenseNet),
    EfficientNet(EfficientNet),
}

impl Backbone {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Backbone::SimpleCnn(net) => net.forward(x),
            Backbone::ResNet(net) => net.forward(x),
            Backbone::MobileNetV2(net) => net.forward(x),
            Backbone::DenseNet(net) => net.forward(x),
            Backbone::EfficientNet(net) => net.forward(x),
        }
    }
}

/// A multi-label chest X-ray classifier: `[N, 1, S, S]` (any S ≥ 64) → `[N, labels]` logits.
#[derive(Module, Debug)]
pub struct Classifier {
    backbone: Backbone,
    /// simple-cnn's dense layer (with ReLU) between pooling and the output; absent elsewhere.
    hidden: Option<Linear>,
    dropout: Dropout,
    head: Linear,
}

impl Classifier {
    /// Builds a freshly initialised model; nothing is downloaded.
    pub fn new(spec: &ModelSpec, num_labels: usize, device: &Device) -> Self {
        let (backbone, features) = match spec.architecture {
            Architecture::SimpleCnn => (
                Backbone::SimpleCnn(SimpleCnn::new(spec, device)),
                SimpleCnn::out_channels(spec),
            ),
            Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50 => {
                (Backbone::ResNet(ResNet::new(spec, device)), ResNet::out_channels(spec))
            }
            Architecture::MobileNetV2 => (
                Backbone::MobileNetV2(MobileNetV2::new(spec, device)),
                MobileNetV2::out_channels(spec),
            ),
            Architecture::DenseNet121 => (
                Backbone::DenseNet(DenseNet::new(spec, device)),
                DenseNet::out_channels(spec),
            ),
            Architecture::EfficientNetB0 => (
                Backbone::EfficientNet(EfficientNet::new(spec, device)),
                EfficientNet::out_channels(spec),
            ),
        };
        let (hidden, head_inputs) = match spec.architecture {
            Architecture::SimpleCnn => {
                let units = scale_channels(simple_cnn::DENSE_UNITS, spec.width);
                (Some(linear(features, units, device)), units)
            }
            _ => (None, features),
        };
        Classifier {
            backbone,
            hidden,
            dropout: DropoutConfig::new(spec.dropout as f64).init(),
            head: linear(head_inputs, num_labels, device),
        }
    }

    /// Logits `[N, labels]`; apply a sigmoid for per-label probabilities.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with_features(x).0
    }

    /// Logits and the last convolutional feature map `[N, C, h, w]` they were pooled from, for
    /// Grad-CAM (the map is part of the autodiff graph, so its gradient can be taken).
    pub fn forward_with_features(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<4>) {
        let features = self.backbone.forward(x);
        let pooled = global_average_pool(features.clone());
        let pooled = match &self.hidden {
            Some(hidden) => relu(hidden.forward(pooled)),
            None => pooled,
        };
        let logits = self.head.forward(self.dropout.forward(pooled));
        (logits, features)
    }

    /// Removes the output layer's gradients from `grads` and returns them (what is left belongs
    /// to the backbone), so the two can be stepped at different learning rates.
    pub fn take_head_grads(&self, grads: &mut burn::tensor::Gradients) -> burn::optim::GradientsParams {
        burn::optim::GradientsParams::from_module(grads, &self.head)
    }

    /// Trainable parameters (batch norm running statistics are not counted).
    pub fn num_params(&self) -> usize {
        let mut counter = TrainableCounter::default();
        self.visit(&mut counter);
        counter.count
    }

    /// Channels of the feature map from [`Self::forward_with_features`].
    pub fn feature_channels(&self) -> usize {
        // Linear weights are stored [inputs, outputs].
        match &self.hidden {
            Some(hidden) => hidden.weight.dims()[0],
            None => self.head.weight.dims()[0],
        }
    }

    /// Number of labels the head predicts.
    pub fn num_labels(&self) -> usize {
        self.head.weight.dims()[1]
    }
}

impl ModelSpec {
    /// Builds the model this spec describes; same as [`Classifier::new`].
    pub fn init(&self, num_labels: usize, device: &Device) -> Classifier {
        Classifier::new(self, num_labels, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NormKind;
    use burn::nn::loss::BinaryCrossEntropyLossConfig;
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::{Distribution, Int, TensorData};

    const LABELS: usize = 3;

    fn spec(architecture: Architecture, norm: NormKind, width: f32) -> ModelSpec {
        ModelSpec {
            architecture,
            norm,
            width,
            dropout: 0.2,
        }
    }

    fn images(n: usize, size: usize) -> Tensor<4> {
        Tensor::random([n, 1, size, size], Distribution::Normal(0.0, 1.0), &Device::flex())
    }

    #[test]
    fn every_architecture_and_norm_maps_images_to_one_logit_per_label() {
        let device = Device::flex();
        for architecture in Architecture::ALL {
            for norm in [NormKind::Batch, NormKind::Group, NormKind::Layer, NormKind::Instance] {
                let model = spec(architecture, norm, 0.125).init(LABELS, &device);
                for size in [64, 96] {
                    let logits = model.forward(images(2, size));
                    assert_eq!(
                        logits.dims(),
                        [2, LABELS],
                        "{architecture} with {norm:?} norm at {size} px"
                    );
                    let values = logits.into_data().try_to_vec::<f32>().unwrap();
                    assert!(
                        values.iter().all(|v| v.is_finite()),
                        "{architecture} {norm:?}: {values:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn features_are_the_last_conv_map_at_the_expected_stride() {
        let device = Device::flex();
        // Total downsampling of each backbone: the input side divided by the map side.
        let cases = [
            (Architecture::SimpleCnn, 8),
            (Architecture::ResNet18, 32),
            (Architecture::ResNet50, 32),
            (Architecture::MobileNetV2, 32),
            (Architecture::DenseNet121, 32),
            (Architecture::EfficientNetB0, 32),
        ];
        for (architecture, stride) in cases {
            let spec = spec(architecture, NormKind::Batch, 0.125);
            let model = spec.init(LABELS, &device);
            let (logits, features) = model.forward_with_features(images(2, 128));
            assert_eq!(logits.dims(), [2, LABELS], "{architecture}");
            let channels = model.feature_channels();
            assert_eq!(
                features.dims(),
                [2, channels, 128 / stride, 128 / stride],
                "{architecture}"
            );
        }
    }

    #[test]
    fn published_parameter_counts_less_the_rgb_stem_and_imagenet_head() {
        let device = Device::flex();
        let labels = 14;
        // torchvision's resnet18 has 11_689_512 parameters. Our stem sees 1 channel, not 3:
        // 64 × 7 × 7 × (3 − 1) = 6_272 fewer; the 1000-class head (512 × 1000 + 1000 = 513_000)
        // becomes 512 × L + L.
        let resnet18 = 11_689_512 - 6_272 - 513_000 + 513 * labels;
        // torchvision's densenet121 has 7_978_856: the same stem saving, and its head is
        // 1024 × 1000 + 1000 = 1_025_000, replaced by 1024 × L + L.
        let densenet121 = 7_978_856 - 6_272 - 1_025_000 + 1025 * labels;
        for (architecture, expected) in [
            (Architecture::ResNet18, resnet18),
            (Architecture::DenseNet121, densenet121),
        ] {
            let model = spec(architecture, NormKind::Batch, 1.0).init(labels, &device);
            assert_eq!(model.num_params(), expected, "{architecture}");
        }
    }

    #[test]
    fn width_scales_the_parameter_count_down() {
        let device = Device::flex();
        let full = spec(Architecture::ResNet18, NormKind::Batch, 1.0).init(LABELS, &device);
        let quarter = spec(Architecture::ResNet18, NormKind::Batch, 0.25).init(LABELS, &device);
        // Convolution weights grow with the square of the width.
        let ratio = full.num_params() as f64 / quarter.num_params() as f64;
        assert!((12.0..20.0).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn sgd_steps_reduce_the_loss_on_a_learnable_toy_set() {
        let device = Device::flex().autodiff();
        let toy_spec = ModelSpec {
            dropout: 0.0,
            ..spec(Architecture::SimpleCnn, NormKind::Batch, 0.25)
        };
        // Seeded so the initial weights, and so the run, are the same every time.
        device.seed(7);
        let mut model = toy_spec.init(1, &device);
        // Label 1: a bright square somewhere; label 0: an empty image.
        let n = 8;
        let size = 64;
        let mut pixels = vec![0.0f32; n * size * size];
        let mut labels = Vec::new();
        for i in 0..n {
            let positive = i % 2 == 0;
            let offset = 4 + 6 * i;
            if positive {
                for y in offset..offset + 16 {
                    for x in offset..offset + 16 {
                        pixels[i * size * size + y * size + x] = 1.0;
                    }
                }
            }
            labels.push(positive as i64);
        }
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 1, size, size]), &device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(labels, [n, 1]), &device);
        let loss_fn = BinaryCrossEntropyLossConfig::new().with_logits(true).init(&device);
        let mut optimizer = SgdConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..25 {
            let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.1, model, grads);
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < first * 0.5, "loss went from {first} to {last}: {losses:?}");
    }

    #[test]
    fn a_saved_record_loads_into_a_model_with_identical_outputs() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model");
        for architecture in [Architecture::ResNet18, Architecture::EfficientNetB0] {
            let spec = spec(architecture, NormKind::Batch, 0.125);
            let model = spec.init(LABELS, &device);
            let x = images(2, 64);
            let before = model.forward(x.clone()).into_data();
            model.save_file(&path).unwrap();
            let fresh = spec.init(LABELS, &device);
            assert_ne!(
                fresh.forward(x.clone()).into_data(),
                before,
                "fresh weights should differ"
            );
            let loaded = fresh.try_load_file(&path).unwrap();
            assert_eq!(loaded.forward(x).into_data(), before, "{architecture}");
        }
    }

    #[test]
    fn convolution_weights_use_kaiming_normal_fan_out() {
        let device = Device::flex();
        let model = spec(Architecture::ResNet18, NormKind::Batch, 1.0).init(LABELS, &device);
        let Backbone::ResNet(resnet) = &model.backbone else {
            panic!("resnet-18 should build a ResNet backbone")
        };
        let weight = resnet.stem_weight_for_test();
        // Stem: 64 filters of 7 × 7, so fan-out = 64 × 49 and std = sqrt(2 / 3136) ≈ 0.0253.
        let values = weight.into_data().try_to_vec::<f32>().unwrap();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt();
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!((std - 0.0253).abs() < 0.002, "std {std}");
    }
}

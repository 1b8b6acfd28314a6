//! Building blocks shared by the architectures: the configurable normalisation layer, convolution
//! and linear constructors with the project's initialisation, width scaling, and the trainable
//! parameter counter.

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, Initializer, InstanceNorm, InstanceNormConfig, Linear,
    LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;

use super::batch_norm::batch_norm;
use super::depthwise::DepthwiseConv2d;
use super::NormKind;

/// Channel counts are rounded to a multiple of this, so group norm always has whole groups.
const CHANNEL_DIVISOR: usize = 4;
/// Narrowest layer a width multiplier may produce; thinner layers stop learning anything useful.
const MIN_CHANNELS: usize = 8;
/// Group norm's usual group count (Wu & He 2018); fewer when the channels do not divide.
const GROUP_NORM_GROUPS: usize = 32;

/// Scales a published channel count by the width multiplier. Width 1.0 leaves every published
/// count unchanged (they are all multiples of 4).
pub fn scale_channels(channels: usize, width: f32) -> usize {
    let scaled = (channels as f32 * width / CHANNEL_DIVISOR as f32).round() as usize * CHANNEL_DIVISOR;
    scaled.max(MIN_CHANNELS)
}

/// A normalisation layer over `[N, C, H, W]` chosen by [`NormKind`]. Burn's `LayerNorm`
/// normalises only the last axis, so "layer" here is group norm with one group: statistics over
/// C, H and W of each sample, which is what layer norm means for convolutional features.
#[derive(Module, Debug)]
pub enum Norm {
    Batch(BatchNorm),
    Group(GroupNorm),
    Instance(InstanceNorm),
}

impl Norm {
    /// γ = 1 and β = 0 are the Burn defaults for all three layers.
    pub fn new(kind: NormKind, channels: usize, device: &Device) -> Self {
        match kind {
            NormKind::Batch => Norm::Batch(BatchNormConfig::new(channels).init(device)),
            NormKind::Group => {
                let groups = (1..=GROUP_NORM_GROUPS.min(channels))
                    .rev()
                    .find(|g| channels.is_multiple_of(*g))
                    .unwrap_or(1);
                Norm::Group(GroupNormConfig::new(groups, channels).init(device))
            }
            NormKind::Layer => Norm::Group(GroupNormConfig::new(1, channels).init(device)),
            NormKind::Instance => Norm::Instance(InstanceNormConfig::new(channels).init(device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Norm::Batch(norm) => batch_norm(norm, x),
            Norm::Group(norm) => norm.forward(x),
            Norm::Instance(norm) => norm.forward(x),
        }
    }
}

/// A bias-free convolution (a norm always follows) with He/Kaiming normal fan-out initialisation,
/// as in He et al. 2015 and torchvision's ResNet; "same" padding of `kernel / 2` on every side.
pub fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let padding = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

/// A fully connected layer with Burn's default weight initialisation and a zero bias.
pub fn linear(d_input: usize, d_output: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_input, d_output).init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_output], device)));
    layer
}

/// Convolution → norm, the unit every architecture repeats; the activation is left to the caller
/// because it differs (ReLU, ReLU6, SiLU, none before a residual sum).
#[derive(Module, Debug)]
pub struct ConvNorm {
    conv: ConvLayer,
    norm: Norm,
}

impl ConvNorm {
    /// `groups == channels[0] == channels[1]` (one filter per channel) builds the depthwise layer,
    /// whose CPU backward is far faster than Burn's grouped convolution; anything else is Burn's
    /// `Conv2d`.
    pub fn new(
        norm: NormKind,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        let [in_channels, out_channels] = channels;
        let conv = if groups == in_channels && groups == out_channels {
            ConvLayer::Depthwise(DepthwiseConv2d::new(in_channels, kernel, stride, device))
        } else {
            ConvLayer::Dense(conv(in_channels, out_channels, kernel, stride, groups, device))
        };
        ConvNorm {
            conv,
            norm: Norm::new(norm, out_channels, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = match &self.conv {
            ConvLayer::Dense(conv) => conv.forward(x),
            ConvLayer::Depthwise(conv) => conv.forward(x),
        };
        self.norm.forward(x)
    }

    #[cfg(test)]
    pub fn conv_weight(&self) -> Tensor<4> {
        match &self.conv {
            ConvLayer::Dense(conv) => conv.weight.val(),
            ConvLayer::Depthwise(conv) => conv.weight.val(),
        }
    }
}

/// The convolution of a [`ConvNorm`]. `Module` is implemented by hand rather than derived because
/// a derived enum puts the variant name into every parameter path (`conv.Depthwise.weight`);
/// this one is transparent, so both variants record their weight as `conv.weight` `[out, in /
/// groups, k, k]`, exactly as when every layer was a `Conv2d`: same parameter names, counts and
/// checkpoint layout.
#[derive(Debug, Clone)]
enum ConvLayer {
    Dense(Conv2d),
    Depthwise(DepthwiseConv2d),
}

impl Module for ConvLayer {
    fn collect_devices(&self, devices: Devices) -> Devices {
        match self {
            ConvLayer::Dense(conv) => conv.collect_devices(devices),
            ConvLayer::Depthwise(conv) => conv.collect_devices(devices),
        }
    }

    fn fork(self, device: &Device) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.fork(device)),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.fork(device)),
        }
    }

    fn to_device(self, device: &Device) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.to_device(device)),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.to_device(device)),
        }
    }

    fn train(self) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.train()),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.train()),
        }
    }

    fn valid(&self) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.valid()),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.valid()),
        }
    }

    fn materialize(self) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.materialize()),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.materialize()),
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        match self {
            ConvLayer::Dense(conv) => conv.visit(visitor),
            ConvLayer::Depthwise(conv) => conv.visit(visitor),
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        match self {
            ConvLayer::Dense(conv) => ConvLayer::Dense(conv.map(mapper)),
            ConvLayer::Depthwise(conv) => ConvLayer::Depthwise(conv.map(mapper)),
        }
    }
}

impl ModuleDisplayDefault for ConvLayer {
    fn content(&self, content: Content) -> Option<Content> {
        match self {
            ConvLayer::Dense(conv) => content.add_single(conv).optional(),
            ConvLayer::Depthwise(conv) => content.add_single(conv).optional(),
        }
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl ModuleDisplay for ConvLayer {}

/// Mean over the spatial axes: `[N, C, H, W]` → `[N, C]`, for any H and W.
pub fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// Counts trainable parameters, skipping batch norm's running statistics: Burn visits those like
/// parameters, but published parameter counts (and optimisers) leave them out.
#[derive(Default)]
pub struct TrainableCounter {
    path: Vec<String>,
    pub count: usize,
}

impl ModuleVisitor for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let running_statistic = self.path.last().is_some_and(|name| name.starts_with("running_"));
        if !running_statistic {
            self.count += param.shape().num_elements();
        }
    }
}

/// Each float parameter's path and shape, as records and optimisers see them (for tests).
#[cfg(test)]
pub(super) fn param_paths<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    #[derive(Default)]
    struct Paths {
        path: Vec<String>,
        found: Vec<(String, Vec<usize>)>,
    }

    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.push((self.path.join("."), param.shape().to_vec()));
        }
    }

    let mut paths = Paths::default();
    module.visit(&mut paths);
    paths.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depthwise_and_dense_conv_norms_name_their_weight_conv_weight() {
        let device = Device::flex();
        for (channels, groups, weight_shape) in [
            ([24, 24], 24, vec![24, 1, 3, 3]),
            ([24, 48], 1, vec![48, 24, 3, 3]),
            ([24, 48], 4, vec![48, 6, 3, 3]),
        ] {
            let layer = ConvNorm::new(NormKind::Group, channels, 3, 2, groups, &device);
            let paths = param_paths(&layer);
            let convs: Vec<_> = paths.iter().filter(|(path, _)| path.starts_with("conv")).collect();
            assert_eq!(
                convs,
                vec![&("conv.weight".to_string(), weight_shape)],
                "groups {groups}"
            );
            let x = Tensor::<4>::ones([2, channels[0], 9, 8], &device);
            assert_eq!(layer.forward(x).dims(), [2, channels[1], 5, 4], "groups {groups}");
        }
    }
}

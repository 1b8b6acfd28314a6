//! EfficientNet-B0 (Tan & Le 2019): MBConv blocks (expand 1×1 → depthwise k×k → squeeze-and-
//! excitation → project 1×1) with SiLU; one input channel. Stochastic depth is left out.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use super::layers::{global_average_pool, linear, scale_channels, ConvNorm};
use super::silu::silu;
use super::{ModelSpec, NormKind};

/// (expansion, kernel, first stride, output channels, repeats) from the paper's table 1.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
/// The squeeze layer has a quarter of the block's input channels.
const SE_RATIO_DIVISOR: usize = 4;

/// Squeeze-and-excitation (Hu et al. 2018) on pooled features; linear layers are the same as the
/// paper's 1×1 convolutions on a 1×1 map, with fewer reshapes.
#[derive(Module, Debug)]
struct SqueezeExcite {
    reduce: Linear,
    expand: Linear,
}

impl SqueezeExcite {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, _, _] = x.dims();
        let scale = sigmoid(
            self.expand
                .forward(silu(self.reduce.forward(global_average_pool(x.clone())))),
        );
        x * scale.reshape([n, c, 1, 1])
    }
}

#[derive(Module, Debug)]
struct MbConv {
    expand: Option<ConvNorm>,
    depthwise: ConvNorm,
    squeeze_excite: SqueezeExcite,
    project: ConvNorm,
    residual: bool,
}

impl MbConv {
    fn new(
        norm: NormKind,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        expansion: usize,
        device: &Device,
    ) -> Self {
        let hidden = in_channels * expansion;
        let squeezed = (in_channels / SE_RATIO_DIVISOR).max(1);
        MbConv {
            expand: (expansion != 1).then(|| ConvNorm::new(norm, [in_channels, hidden], 1, 1, 1, device)),
            depthwise: ConvNorm::new(norm, [hidden, hidden], kernel, stride, hidden, device),
            squeeze_excite: SqueezeExcite {
                reduce: linear(hidden, squeezed, device),
                expand: linear(squeezed, hidden, device),
            },
            project: ConvNorm::new(norm, [hidden, out_channels], 1, 1, 1, device),
            residual: stride == 1 && in_channels == out_channels,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(expand) => silu(expand.forward(x.clone())),
            None => x.clone(),
        };
        let y = self.squeeze_excite.forward(silu(self.depthwise.forward(y)));
        let y = self.project.forward(y);
        if self.residual {
            y + x
        } else {
            y
        }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNet {
    stem: ConvNorm,
    blocks: Vec<MbConv>,
    head: ConvNorm,
}

impl EfficientNet {
    pub fn new(spec: &ModelSpec, device: &Device) -> Self {
        let stem_channels = scale_channels(STEM_CHANNELS, spec.width);
        let mut in_channels = stem_channels;
        let mut blocks = Vec::new();
        for &(expansion, kernel, first_stride, channels, repeats) in &STAGES {
            let out_channels = scale_channels(channels, spec.width);
            for index in 0..repeats {
                let stride = if index == 0 { first_stride } else { 1 };
                blocks.push(MbConv::new(
                    spec.norm,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    expansion,
                    device,
                ));
                in_channels = out_channels;
            }
        }
        EfficientNet {
            stem: ConvNorm::new(spec.norm, [1, stem_channels], 3, 2, 1, device),
            blocks,
            head: ConvNorm::new(spec.norm, [in_channels, Self::out_channels(spec)], 1, 1, 1, device),
        }
    }

    pub fn out_channels(spec: &ModelSpec) -> usize {
        scale_channels(HEAD_CHANNELS, spec.width)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = silu(self.stem.forward(x));
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        silu(self.head.forward(x))
    }
}

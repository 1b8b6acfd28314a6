//! ResNet-18/34 (basic blocks) and ResNet-50 (bottleneck blocks), He et al. 2016, with the
//! stride on the 3×3 convolution of the bottleneck as in torchvision ("ResNet v1.5"). The stem
//! takes one channel instead of three.

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::layers::{scale_channels, ConvNorm};
use super::{Architecture, ModelSpec, NormKind};

/// Stem and first-stage width at 1.0; each later stage doubles it.
const BASE_CHANNELS: usize = 64;
/// Bottleneck blocks output four times their inner width.
const BOTTLENECK_EXPANSION: usize = 4;

#[derive(Module, Debug)]
pub struct ResNet {
    stem: ConvNorm,
    stem_pool: MaxPool2d,
    blocks: Vec<Block>,
}

/// One residual block: basic (two 3×3) when `reduce` is absent, else bottleneck (1×1, 3×3, 1×1).
#[derive(Module, Debug)]
struct Block {
    reduce: Option<ConvNorm>,
    conv: ConvNorm,
    out: ConvNorm,
    /// 1×1 projection when the shortcut changes shape.
    shortcut: Option<ConvNorm>,
}

impl Block {
    fn basic(norm: NormKind, in_channels: usize, channels: usize, stride: usize, device: &Device) -> Self {
        Block {
            reduce: None,
            conv: ConvNorm::new(norm, [in_channels, channels], 3, stride, 1, device),
            out: ConvNorm::new(norm, [channels, channels], 3, 1, 1, device),
            shortcut: shortcut(norm, in_channels, channels, stride, device),
        }
    }

    fn bottleneck(norm: NormKind, in_channels: usize, inner: usize, stride: usize, device: &Device) -> Self {
        let out_channels = inner * BOTTLENECK_EXPANSION;
        Block {
            reduce: Some(ConvNorm::new(norm, [in_channels, inner], 1, 1, 1, device)),
            conv: ConvNorm::new(norm, [inner, inner], 3, stride, 1, device),
            out: ConvNorm::new(norm, [inner, out_channels], 1, 1, 1, device),
            shortcut: shortcut(norm, in_channels, out_channels, stride, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.shortcut {
            Some(projection) => projection.forward(x.clone()),
            None => x.clone(),
        };
        let y = match &self.reduce {
            Some(reduce) => relu(reduce.forward(x)),
            None => x,
        };
        let y = relu(self.conv.forward(y));
        relu(self.out.forward(y) + identity)
    }
}

fn shortcut(
    norm: NormKind,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    device: &Device,
) -> Option<ConvNorm> {
    (stride != 1 || in_channels != out_channels)
        .then(|| ConvNorm::new(norm, [in_channels, out_channels], 1, stride, 1, device))
}

/// Blocks per stage and whether they are bottlenecks (He et al. 2016, table 1).
fn layout(architecture: Architecture) -> ([usize; 4], bool) {
    match architecture {
        Architecture::ResNet18 => ([2, 2, 2, 2], false),
        Architecture::ResNet34 => ([3, 4, 6, 3], false),
        Architecture::ResNet50 => ([3, 4, 6, 3], true),
        other => unreachable!("{other} is not a ResNet"),
    }
}

impl ResNet {
    /// `spec.architecture` must be one of the ResNets.
    pub fn new(spec: &ModelSpec, device: &Device) -> Self {
        let (stages, bottleneck) = layout(spec.architecture);
        let stem_channels = scale_channels(BASE_CHANNELS, spec.width);
        let mut in_channels = stem_channels;
        let mut blocks = Vec::new();
        for (stage, &count) in stages.iter().enumerate() {
            let channels = scale_channels(BASE_CHANNELS << stage, spec.width);
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let block = if bottleneck {
                    Block::bottleneck(spec.norm, in_channels, channels, stride, device)
                } else {
                    Block::basic(spec.norm, in_channels, channels, stride, device)
                };
                in_channels = if bottleneck {
                    channels * BOTTLENECK_EXPANSION
                } else {
                    channels
                };
                blocks.push(block);
            }
        }
        ResNet {
            stem: ConvNorm::new(spec.norm, [1, stem_channels], 7, 2, 1, device),
            stem_pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
        }
    }

    pub fn out_channels(spec: &ModelSpec) -> usize {
        let (_, bottleneck) = layout(spec.architecture);
        let last = scale_channels(BASE_CHANNELS << 3, spec.width);
        if bottleneck {
            last * BOTTLENECK_EXPANSION
        } else {
            last
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.stem_pool.forward(relu(self.stem.forward(x)));
        self.blocks.iter().fold(x, |x, block| block.forward(x))
    }
}

#[cfg(test)]
impl ResNet {
    pub fn stem_weight_for_test(&self) -> Tensor<4> {
        self.stem.conv_weight()
    }
}

//! MobileNetV2 (Sandler et al. 2018): inverted residual blocks with depthwise 3×3 convolutions
//! (groups = channels) and ReLU6, one input channel.

use burn::prelude::*;

use super::layers::{scale_channels, ConvNorm};
use super::relu6::relu6;
use super::{ModelSpec, NormKind};

/// (expansion t, output channels c, repeats n, first stride s) from the paper's table 2.
const INVERTED_RESIDUALS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const STEM_CHANNELS: usize = 32;
/// The final 1×1 convolution's width. Unlike torchvision (which never narrows it), it scales
/// with the width multiplier so that small CPU models stay small.
const LAST_CHANNELS: usize = 1280;

#[derive(Module, Debug)]
struct InvertedResidual {
    expand: Option<ConvNorm>,
    depthwise: ConvNorm,
    project: ConvNorm,
    residual: bool,
}

impl InvertedResidual {
    fn new(
        norm: NormKind,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        expansion: usize,
        device: &Device,
    ) -> Self {
        let hidden = in_channels * expansion;
        InvertedResidual {
            expand: (expansion != 1).then(|| ConvNorm::new(norm, [in_channels, hidden], 1, 1, 1, device)),
            depthwise: ConvNorm::new(norm, [hidden, hidden], 3, stride, hidden, device),
            project: ConvNorm::new(norm, [hidden, out_channels], 1, 1, 1, device),
            residual: stride == 1 && in_channels == out_channels,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(expand) => relu6(expand.forward(x.clone())),
            None => x.clone(),
        };
        // Linear bottleneck: no activation after the projection.
        let y = self.project.forward(relu6(self.depthwise.forward(y)));
        if self.residual {
            y + x
        } else {
            y
        }
    }
}

#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvNorm,
    blocks: Vec<InvertedResidual>,
    last: ConvNorm,
}

impl MobileNetV2 {
    pub fn new(spec: &ModelSpec, device: &Device) -> Self {
        let stem_channels = scale_channels(STEM_CHANNELS, spec.width);
        let mut in_channels = stem_channels;
        let mut blocks = Vec::new();
        for &(expansion, channels, repeats, first_stride) in &INVERTED_RESIDUALS {
            let out_channels = scale_channels(channels, spec.width);
            for index in 0..repeats {
                let stride = if index == 0 { first_stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    spec.norm,
                    in_channels,
                    out_channels,
                    stride,
                    expansion,
                    device,
                ));
                in_channels = out_channels;
            }
        }
        MobileNetV2 {
            stem: ConvNorm::new(spec.norm, [1, stem_channels], 3, 2, 1, device),
            blocks,
            last: ConvNorm::new(spec.norm, [in_channels, Self::out_channels(spec)], 1, 1, 1, device),
        }
    }

    pub fn out_channels(spec: &ModelSpec) -> usize {
        scale_channels(LAST_CHANNELS, spec.width)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu6(self.stem.forward(x));
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        relu6(self.last.forward(x))
    }
}

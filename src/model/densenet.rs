//! DenseNet-121 (Huang et al. 2017), the backbone of CheXNet (Rajpurkar et al. 2017): growth
//! rate 32, dense blocks of 6, 12, 24 and 16 layers, bottleneck width 4 × growth, transitions
//! halving the channels; one input channel.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::layers::{conv, scale_channels, Norm};
use super::{ModelSpec, NormKind};

const GROWTH_RATE: usize = 32;
const BLOCK_LAYERS: [usize; 4] = [6, 12, 24, 16];
const STEM_CHANNELS: usize = 64;
/// Each dense layer's 1×1 bottleneck has this many times the growth rate.
const BOTTLENECK_FACTOR: usize = 4;

/// Pre-activation dense layer: norm → ReLU → 1×1 → norm → ReLU → 3×3, producing `growth` maps.
#[derive(Module, Debug)]
struct DenseLayer {
    norm1: Norm,
    conv1: Conv2d,
    norm2: Norm,
    conv2: Conv2d,
}

impl DenseLayer {
    fn new(norm: NormKind, in_channels: usize, growth: usize, device: &Device) -> Self {
        let inner = BOTTLENECK_FACTOR * growth;
        DenseLayer {
            norm1: Norm::new(norm, in_channels, device),
            conv1: conv(in_channels, inner, 1, 1, 1, device),
            norm2: Norm::new(norm, inner, device),
            conv2: conv(inner, growth, 3, 1, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv1.forward(relu(self.norm1.forward(x)));
        self.conv2.forward(relu(self.norm2.forward(y)))
    }
}

/// norm → ReLU → 1×1 (halving channels) → 2×2 average pool.
#[derive(Module, Debug)]
struct Transition {
    norm: Norm,
    conv: Conv2d,
    pool: AvgPool2d,
}

impl Transition {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(self.conv.forward(relu(self.norm.forward(x))))
    }
}

#[derive(Module, Debug)]
struct DenseBlock {
    layers: Vec<DenseLayer>,
}

impl DenseBlock {
    /// Each layer sees the concatenation of the block input and all earlier layers' outputs.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.layers.iter().fold(x, |x, layer| {
            let new = layer.forward(x.clone());
            Tensor::cat(vec![x, new], 1)
        })
    }
}

#[derive(Module, Debug)]
pub struct DenseNet {
    stem: Conv2d,
    stem_norm: Norm,
    stem_pool: MaxPool2d,
    blocks: Vec<DenseBlock>,
    transitions: Vec<Transition>,
    final_norm: Norm,
}

/// Channel count after each block and transition, at a given width.
fn channel_plan(width: f32) -> (usize, usize, Vec<usize>) {
    let growth = scale_channels(GROWTH_RATE, width);
    let stem = scale_channels(STEM_CHANNELS, width);
    let mut channels = stem;
    let mut after_blocks = Vec::new();
    for (index, &layers) in BLOCK_LAYERS.iter().enumerate() {
        channels += layers * growth;
        after_blocks.push(channels);
        if index + 1 < BLOCK_LAYERS.len() {
            channels /= 2;
        }
    }
    (growth, stem, after_blocks)
}

impl DenseNet {
    pub fn new(spec: &ModelSpec, device: &Device) -> Self {
        let (growth, stem_channels, _) = channel_plan(spec.width);
        let mut channels = stem_channels;
        let mut blocks = Vec::new();
        let mut transitions = Vec::new();
        for (index, &count) in BLOCK_LAYERS.iter().enumerate() {
            let layers = (0..count)
                .map(|layer| DenseLayer::new(spec.norm, channels + layer * growth, growth, device))
                .collect();
            blocks.push(DenseBlock { layers });
            channels += count * growth;
            if index + 1 < BLOCK_LAYERS.len() {
                transitions.push(Transition {
                    norm: Norm::new(spec.norm, channels, device),
                    conv: conv(channels, channels / 2, 1, 1, 1, device),
                    pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                });
                channels /= 2;
            }
        }
        DenseNet {
            stem: conv(1, stem_channels, 7, 2, 1, device),
            stem_norm: Norm::new(spec.norm, stem_channels, device),
            stem_pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            transitions,
            final_norm: Norm::new(spec.norm, channels, device),
        }
    }

    pub fn out_channels(spec: &ModelSpec) -> usize {
        let (_, _, after_blocks) = channel_plan(spec.width);
        after_blocks[after_blocks.len() - 1]
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self
            .stem_pool
            .forward(relu(self.stem_norm.forward(self.stem.forward(x))));
        for (index, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if let Some(transition) = self.transitions.get(index) {
                x = transition.forward(x);
            }
        }
        relu(self.final_norm.forward(x))
    }
}

//! `simple-cnn`: a re-creation of the school project's small Keras CNN, kept for reproducing its
//! results. Four blocks of 3×3 convolution → norm → ReLU (32, 64, 128, 256 filters) with 2×2
//! max-pooling between them; the classifier adds the dense layer and dropout. The Keras model flattened a fixed
//! size; global average pooling replaces that so any input size works.

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::layers::{scale_channels, ConvNorm};
use super::ModelSpec;

/// Filters per conv block at width 1.0.
const BLOCK_CHANNELS: [usize; 4] = [32, 64, 128, 256];
/// Units of the dense layer before the output, at width 1.0.
pub const DENSE_UNITS: usize = 128;

#[derive(Module, Debug)]
pub struct SimpleCnn {
    blocks: Vec<ConvNorm>,
    pool: MaxPool2d,
}

impl SimpleCnn {
    pub fn new(spec: &ModelSpec, device: &Device) -> Self {
        let mut in_channels = 1;
        let blocks = BLOCK_CHANNELS
            .iter()
            .map(|&channels| {
                let out_channels = scale_channels(channels, spec.width);
                let block = ConvNorm::new(spec.norm, [in_channels, out_channels], 3, 1, 1, device);
                in_channels = out_channels;
                block
            })
            .collect();
        SimpleCnn {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    pub fn out_channels(spec: &ModelSpec) -> usize {
        scale_channels(BLOCK_CHANNELS[BLOCK_CHANNELS.len() - 1], spec.width)
    }

    /// Pools between blocks but not after the last one: global pooling follows anyway, and
    /// Grad-CAM gets a map at twice the resolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.blocks.iter().enumerate().fold(x, |x, (i, block)| {
            let x = if i > 0 { self.pool.forward(x) } else { x };
            relu(block.forward(x))
        })
    }
}

//! Burn model definitions: the CNN families, their configs, normalisation choice.

mod batch_norm;
mod classifier;
mod densenet;
mod depthwise;
mod efficientnet;
mod extension;
mod layers;
mod mobilenet;
mod relu6;
mod resnet;
mod silu;
mod simple_cnn;
mod spec;
pub mod torchvision;

pub use classifier::Classifier;
pub use layers::scale_channels;
pub use spec::{Architecture, ModelSpec, NormKind};

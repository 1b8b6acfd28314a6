//! Burn model definitions: the CNN families, their configs, normalisation choice.

mod spec;

pub use spec::{Architecture, ModelSpec, NormKind};

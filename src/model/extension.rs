//! What our own Burn extension operations (`depthwise`, `relu6`) share: which devices they have
//! an implementation for, and reading a flex tensor's f32 values.

use burn::backend::flex::FlexTensor;
use burn::backend::DispatchDevice;
use burn::prelude::*;

/// Whether our extensions have an implementation for the backend `device` runs on (flex and the
/// cubecl runtimes, with or without autodiff). Burn's generated dispatch panics on any other, so
/// callers fall back to Burn's own operations there.
#[allow(unreachable_patterns)]
pub(super) fn extension_runs_on(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) | DispatchDevice::Cube(_) => true,
        _ => false,
    }
}

/// The values of a contiguous f32 flex tensor, in row-major order.
pub(super) fn f32_values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor has a plain slice of values")
}

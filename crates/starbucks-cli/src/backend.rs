//! The one place a concrete backend is chosen, by cargo feature. With several features on,
//! the GPU ones win: `cuda`, then `wgpu`, then `ndarray`, then `flex`.
//!
//! Every command reaches its device through [`device_at`]: an index into the backend's own
//! list (CUDA's numbering, wgpu's adapters), checked, and logged by name.

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod wgpu;

#[cfg(feature = "cuda")]
mod chosen {
    pub type Inference = burn::backend::Cuda;
    pub const NAME: &str = "cuda";
    pub use super::cuda::device_at;
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod chosen {
    pub type Inference = burn::backend::Wgpu;
    pub const NAME: &str = "wgpu";
    pub use super::wgpu::device_at;
}

#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
mod chosen {
    pub type Inference = burn::backend::NdArray;
    pub const NAME: &str = "ndarray";

    /// The CPU backends have one device: every index is the CPU.
    pub fn device_at(_index: usize) -> Result<burn::tensor::Device<Inference>, String> {
        Ok(Default::default())
    }
}

#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))))]
mod chosen {
    pub type Inference = burn::backend::Flex;
    pub const NAME: &str = "flex";

    /// The CPU backends have one device: every index is the CPU.
    pub fn device_at(_index: usize) -> Result<burn::tensor::Device<Inference>, String> {
        Ok(Default::default())
    }
}

#[cfg(not(any(feature = "flex", feature = "ndarray", feature = "wgpu", feature = "cuda")))]
compile_error!("enable one backend feature of starbucks-cli: flex, ndarray, wgpu or cuda");

pub use chosen::{Inference, NAME, device_at};

/// The backend with automatic differentiation, for training and gradient benchmarks.
pub type Training = burn::backend::Autodiff<Inference>;

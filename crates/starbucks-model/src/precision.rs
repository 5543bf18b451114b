//! The arithmetic of the embedder's matrix products.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How [`crate::Embedder`] multiplies. `F32` runs on every backend; the others on the CPU
/// (flex) backend only, and only the dense layers' products change (attention, LayerNorm, GELU
/// and pooling stay f32):
/// - `Int8`: the weights quantised once per output column (to 8 bits where the CPU has AVX-512
///   VNNI, else to 7, so that AVX2's u8 × i8 pairs cannot saturate), the activations per row at
///   run time (to 0..=255 around a zero point), the products summed exactly in i32
///   (`starbucks_kernels::quant`);
/// - `Bf16`: weights and activations rounded to bf16, products summed in f32 by AVX-512 BF16's
///   `vdpbf16ps` (PyTorch's bf16 autocast rounds the same operands); a CPU without AVX-512 BF16
///   refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Int8,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Int8, Precision::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this machine's CPU runs the precision (bf16 needs AVX-512 BF16).
    pub fn runs_on_this_cpu(self) -> bool {
        match self {
            Precision::F32 | Precision::Int8 => true,
            #[cfg(feature = "flex")]
            Precision::Bf16 => starbucks_kernels::simd::bf16_supported(),
            #[cfg(not(feature = "flex"))]
            Precision::Bf16 => false,
        }
    }

    /// A dense layer of the CPU encoder in this precision.
    #[cfg(feature = "flex")]
    pub(crate) fn linear(
        self,
        weight: Vec<f32>,
        in_features: usize,
        out_features: usize,
        bias: Option<Vec<f32>>,
    ) -> starbucks_kernels::Linear {
        use starbucks_kernels::Linear;
        match self {
            Precision::F32 => Linear::f32(weight, in_features, out_features, bias),
            Precision::Int8 => Linear::int8(&weight, in_features, out_features, bias),
            Precision::Bf16 => Linear::bf16(&weight, in_features, out_features, bias),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision `{s}`: expected f32, int8 or bf16"))
    }
}

//! Dropout with a mask drawn from a counter-based hash, in parallel. burn-flex draws dropout
//! masks element by element from one `StdRng`, on one core.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Distribution, Int, Tensor, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::CHUNK;
use crate::copy::update_f32;
use crate::dispatch::{cast, same};

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `z`.
#[inline(always)]
pub fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Dropout by our kernel when `B` is autodiff over flex (without autodiff burn's dropout is
/// the identity); `Err(x)` otherwise.
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let x = cast::<_, Tensor<Autodiff<Flex>, D>>(x)?;
    if prob == 0.0 || x.dtype() != DType::F32 {
        return Err(same(x));
    }
    // Four 16-bit draws from flex's random stream make the seed of this call's mask.
    let draws = Tensor::<Flex, 1, Int>::random([4], Distribution::Uniform(0.0, 65_536.0), &Default::default());
    let draws = draws.into_data().convert::<i64>().to_vec::<i64>().expect("four integer draws");
    let mask = Mask {
        seed: draws.iter().fold(0u64, |seed, &d| (seed << 16) | d as u64),
        // Keep an element when the top 32 bits of its hash are below this.
        threshold: ((1.0 - prob) * 4_294_967_296.0) as u64,
        scale: (1.0 / (1.0 - prob)) as f32,
    };
    let primitive = x.into_primitive().tensor();
    Ok(same(Tensor::<Autodiff<Flex>, D>::from_primitive(TensorPrimitive::Float(dropout_autodiff(primitive, mask)))))
}

/// One dropout call's mask: element `i` (row-major) is kept, and scaled, when
/// `splitmix64(seed + i)`'s top 32 bits are below `threshold`.
#[derive(Debug, Clone, Copy)]
struct Mask {
    seed: u64,
    threshold: u64,
    scale: f32,
}

impl Mask {
    /// `x` (f32) times the mask, scaled.
    fn apply(self, x: FlexTensor) -> FlexTensor {
        let apply = |values: &mut [f32]| {
            values.par_chunks_mut(CHUNK).enumerate().for_each(|(task, chunk)| {
                let base = self.seed.wrapping_add((task * CHUNK) as u64);
                for (i, v) in chunk.iter_mut().enumerate() {
                    let keep = splitmix64(base.wrapping_add(i as u64)) >> 32 < self.threshold;
                    *v = if keep { *v * self.scale } else { 0.0 };
                }
            })
        };
        update_f32(x, apply)
    }
}

fn dropout_autodiff(x: FloatTensor<Autodiff<Flex>>, mask: Mask) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct DropoutBackward;

    impl Backward<Flex, 1> for DropoutBackward {
        type State = Mask;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let mask = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| mask.apply(grad));
        }
    }

    match DropoutBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(mask, mask.apply(x.primitive)),
        OpsKind::UnTracked(prep) => prep.finish(mask.apply(x.primitive)),
    }
}

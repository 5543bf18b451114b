//! Instruction-set tiers, picked at run time, so that the kernels use the widest registers the
//! CPU has while the crate itself is built for the baseline x86-64; and loops compiled once per
//! tier ([`simd!`]).
//!
//! Tests can run any kernel at a lower tier than the CPU's widest ([`with_tier`]), so that every
//! tier's code is checked on a machine that has the widest; a whole process can be held to a
//! lower tier by the environment ([`TIER_VARIABLE`]), so that a narrower tier is measured there.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

/// An instruction-set tier: each includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Portable code (the compiler's baseline: SSE2 on x86-64).
    Scalar,
    /// AVX2 and FMA: 256-bit registers (Haswell, Zen 1 and later).
    Avx2,
    /// AVX-512 F, BW, VL and VNNI: 512-bit registers and `vpdpbusd`, u8 × i8 products summed into
    /// i32 without saturation (Ice Lake, Sapphire Rapids, Zen 4 and later).
    Avx512,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Scalar, Tier::Avx2, Tier::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the tier's code.
    pub fn supported(self) -> bool {
        match self {
            Tier::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => {
                Tier::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The tier named `name` ([`Tier::name`]).
    pub fn from_name(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The widest tier the kernels may use, as [`TIER_VARIABLE`] sets it: `None` when it is
    /// unset, an error naming the variable when its value names no tier. A cap above what the
    /// CPU runs is no error: the CPU's widest tier runs.
    pub fn cap() -> Result<Option<Tier>, String> {
        match std::env::var(TIER_VARIABLE) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Ok(value) => Tier::from_name(&value).map(Some).ok_or_else(|| {
                let names: Vec<&str> = Tier::ALL.iter().map(|t| t.name()).collect();
                format!("{TIER_VARIABLE}={value:?} names no instruction-set tier: expected one of {}", names.join(", "))
            }),
            Err(std::env::VarError::NotUnicode(value)) => {
                Err(format!("{TIER_VARIABLE}={value:?} names no instruction-set tier"))
            }
        }
    }

    /// The widest tier this CPU runs, at most the [`Tier::cap`] (read once; a value that names
    /// no tier is ignored here: programs check [`Tier::cap`] when they start, as the
    /// `starbucks` CLI does).
    pub fn widest() -> Tier {
        static WIDEST: OnceLock<Tier> = OnceLock::new();
        *WIDEST.get_or_init(|| {
            let cap = Tier::cap().ok().flatten().unwrap_or(Tier::Avx512);
            Tier::ALL.into_iter().rev().find(|t| *t <= cap && t.supported()).unwrap_or(Tier::Scalar)
        })
    }

    /// The tier the kernels run at on this thread: the one [`with_tier`] set, or the widest.
    pub fn current() -> Tier {
        FORCED.with(Cell::get).unwrap_or_else(Tier::widest)
    }
}

/// The environment variable that holds every kernel of the process to a tier at most, by its
/// [`Tier::name`] (`scalar`, `avx2` or `avx512`), as oneDNN's `ONEDNN_MAX_CPU_ISA` does: to
/// measure a narrower tier's kernels on a CPU that has a wider one.
pub const TIER_VARIABLE: &str = "STARBUCKS_SIMD";

/// Whether this CPU has AVX-512 BF16 (`vdpbf16ps`) beside the AVX-512 tier, and no cap holds
/// the process below that tier: what the bf16 products need to run at speed. A tier forced
/// below AVX-512 ([`with_tier`]) runs them in portable code.
pub fn bf16_supported() -> bool {
    static BF16: OnceLock<bool> = OnceLock::new();
    *BF16.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            Tier::widest() == Tier::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

thread_local! {
    static FORCED: Cell<Option<Tier>> = const { Cell::new(None) };
}

/// Runs `work` with every kernel at `tier`, on a pool of one thread (the tier is the thread's,
/// and the kernels split their work over the pool they run on), then restores the default. For
/// tests and measurements; the result is the same as on the default pool, which splits no
/// kernel so as to change its arithmetic.
///
/// Panics if the CPU cannot run `tier`.
pub fn with_tier<R: Send>(tier: Tier, work: impl FnOnce() -> R + Send) -> R {
    assert!(tier.supported(), "this CPU cannot run the {tier} tier");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread for a one-thread pool");
    pool.install(|| {
        FORCED.with(|f| f.set(Some(tier)));
        let out = work();
        FORCED.with(|f| f.set(None));
        out
    })
}

/// `simd!(name(arg: Type, …) [-> Return] { body })` defines `pub(crate) fn name`, whose body is
/// compiled for AVX-512F, for AVX2 + FMA and for the baseline; each call runs the variant of
/// [`Tier::current`].
macro_rules! simd {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)? $body:block) => {
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::simd::Tier::current() {
                    // SAFETY: the tier is one the CPU has (`Tier::current`).
                    $crate::simd::Tier::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Tier::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Tier::Scalar => {}
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use simd;

/// Asks for the cache lines that hold `len` f32s from `first` (at most 16, so one line, or two
/// where they straddle a boundary; the first and the last value's lines) ahead of a register
/// tile's stores to them. A tile's output rows were last written by an earlier product and lie
/// in L3 or memory: fetched before the tile's products, they arrive meanwhile, where otherwise
/// the stores wait for them at the end and the next tile's set-up waits on the stores
/// (`docs/benchmarks.md`, "Output lines fetched ahead"). A prefetch never faults.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_row(first: *const f32, len: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    debug_assert!((1..=16).contains(&len), "{len} values span more than two lines");
    for at in [first, first.wrapping_add(len - 1)] {
        // SAFETY: a prefetch reads nothing the program sees and never faults, whatever the
        // address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
}

/// Floats in one AVX-512 register: the lanes of the kernels' reductions.
pub(crate) const LANES: usize = 16;

/// `values` folded by `step` from `init` in [`LANES`] independent lanes, the lanes then joined by
/// `combine` (for a plain fold, the same function). A fold over floats in one accumulator is a
/// chain of dependent operations, each waiting for the last (the compiler may not reorder float
/// sums); lanes let it run a register of them at a time, and give the same result at every tier.
#[inline(always)]
pub(crate) fn lanes(
    values: &[f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            acc[l] = step(acc[l], chunk[l]);
        }
    }
    // Across the lanes in halves (8 pairs, 4, 2, 1): shuffles of one register, not 16 dependent
    // steps.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] = combine(acc[l], acc[l + width]);
        }
    }
    tail.iter().fold(acc[0], |a, &b| step(a, b))
}

//! Loops compiled once per instruction set and picked at run time, so that they vectorise with
//! the widest registers the CPU has while the crate itself is built for the baseline x86-64.

/// `simd!(name(arg: Type, …) [-> Return] { body })` defines `pub(crate) fn name`, whose body is
/// compiled for AVX-512F, for AVX2 + FMA and for the baseline; each call runs the widest one the
/// CPU has.
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
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked on the line above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use simd;

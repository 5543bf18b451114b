//! Buffers kept between calls: the inference kernels take their outputs and their packed
//! inputs from here, and the caller gives a buffer back ([`keep`]) when it is done with it, so
//! a process that embeds call after call stops asking the allocator for tens of megabytes per
//! layer.
//!
//! Why not leave it to the allocator: glibc serves a large buffer from an arena of the thread
//! that asks for it, and the CPU encoder runs each call on whichever rayon worker takes it, so
//! each worker's first call grew its own arena by thousands of fresh pages, and a process's
//! second call was as slow as its first (`docs/benchmarks.md`). A kept buffer serves whichever
//! thread asks next, as ONNX Runtime's CPU arena does. Like that arena, the memory of the
//! largest batch seen stays with the process, up to a bound: at most [`KEPT`] buffers and
//! [`KEPT_BYTES`] bytes of each kind, and none smaller than [`SMALLEST`] bytes (the allocator
//! serves those well).

use std::sync::{Mutex, PoisonError};

/// Buffers kept of each kind: a layer of the encoder has about eight alive at once.
const KEPT: usize = 16;
/// Bytes kept of each kind at most: a batch of 256 STS-B sentences keeps about 80 MB; a far
/// larger one (32 texts of 512 tokens: 100 MB in one FFN buffer) falls back to the allocator
/// for what does not fit, instead of holding its peak for the life of the process.
const KEPT_BYTES: usize = 256 << 20;
/// Buffers below this many bytes are left to the allocator.
const SMALLEST: usize = 64 * 1024;

/// Empty buffers of `T`, each with the capacity it had when it was given back.
pub(crate) struct Scratch<T> {
    kept: Mutex<Vec<Vec<T>>>,
}

impl<T> Scratch<T> {
    pub(crate) const fn new() -> Self {
        Scratch { kept: Mutex::new(Vec::new()) }
    }

    /// An empty vector with room for `len` values: the one kept last of those with that room
    /// (the likeliest to be in cache still: often the buffer that the caller has just read for
    /// the last time), or a new one (always, below [`SMALLEST`] bytes).
    pub(crate) fn take(&self, len: usize) -> Vec<T> {
        if len * size_of::<T>() < SMALLEST {
            return Vec::with_capacity(len);
        }
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.iter().rposition(|v| v.capacity() >= len) {
            Some(i) => kept.remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Keeps `buffer`'s memory for a later [`Self::take`]; past [`KEPT`] buffers or
    /// [`KEPT_BYTES`] bytes the smallest go back to the allocator (the largest cost the most
    /// page faults to make again).
    pub(crate) fn keep(&self, mut buffer: Vec<T>) {
        let bytes = |v: &Vec<T>| v.capacity() * size_of::<T>();
        if !(SMALLEST..=KEPT_BYTES).contains(&bytes(&buffer)) {
            return;
        }
        buffer.clear();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.push(buffer);
        while kept.len() > KEPT || kept.iter().map(bytes).sum::<usize>() > KEPT_BYTES {
            let smallest = kept.iter().enumerate().min_by_key(|(_, v)| v.capacity()).map_or(0, |(i, _)| i);
            kept.remove(smallest);
        }
    }
}

/// The f32 buffers: outputs of [`crate::Linear::forward`] and [`crate::attention::attention`],
/// and f32 packed inputs.
pub(crate) static F32: Scratch<f32> = Scratch::new();

/// An empty f32 buffer with room for `len` values, kept from an earlier call where one fits.
pub fn take(len: usize) -> Vec<f32> {
    F32.take(len)
}

/// Gives an f32 buffer (a kernel's output, or one from [`take`]) back for a later call.
pub fn keep(buffer: Vec<f32>) {
    F32.keep(buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_the_last_kept_buffer_that_fits_and_keeps_at_most_kept() {
        let scratch = Scratch::<u8>::new();
        scratch.keep(Vec::with_capacity(SMALLEST * 4));
        scratch.keep(Vec::with_capacity(SMALLEST * 2));
        scratch.keep(Vec::with_capacity(SMALLEST * 3));
        scratch.keep(Vec::with_capacity(SMALLEST / 2)); // too small to keep
        let taken = scratch.take(SMALLEST * 2 + 1);
        assert_eq!((taken.len(), taken.capacity()), (0, SMALLEST * 3));
        assert_eq!(scratch.take(SMALLEST).capacity(), SMALLEST * 2);
        assert_eq!(scratch.take(SMALLEST).capacity(), SMALLEST * 4);
        assert!(scratch.take(SMALLEST).capacity() >= SMALLEST, "nothing kept: a new buffer");
        scratch.keep(Vec::with_capacity(SMALLEST * 2));
        assert_eq!(scratch.take(10).capacity(), 10, "a small buffer is never a kept one");
        assert_eq!(scratch.take(SMALLEST).capacity(), SMALLEST * 2);

        for i in 0..KEPT + 3 {
            scratch.keep(vec![1; SMALLEST + i]);
        }
        let kept = scratch.kept.lock().unwrap();
        assert_eq!(kept.len(), KEPT);
        assert!(kept.iter().all(|v| v.is_empty() && v.capacity() >= SMALLEST + 3), "the smallest went");
    }

    #[test]
    fn keep_holds_at_most_kept_bytes_and_lets_the_smallest_go_first() {
        let scratch = Scratch::<u8>::new();
        scratch.keep(Vec::with_capacity(KEPT_BYTES + 1)); // larger than all that is kept
        assert!(scratch.kept.lock().unwrap().is_empty());
        scratch.keep(Vec::with_capacity(KEPT_BYTES / 4));
        scratch.keep(Vec::with_capacity(KEPT_BYTES / 2));
        scratch.keep(Vec::with_capacity(KEPT_BYTES / 2));
        let kept: Vec<usize> = scratch.kept.lock().unwrap().iter().map(Vec::capacity).collect();
        assert_eq!(kept, [KEPT_BYTES / 2, KEPT_BYTES / 2]);
    }
}

//! Panics of a dependency on corrupt input, turned into errors. The parquet crate (60.x) divides
//! by zero and asserts on some corrupt pages (found by fuzzing, docs/reliability.md); a shard
//! streamed over HTTP is untrusted, so its reading runs under [`contained`]: the panic becomes
//! an error naming the shard, and the panic hook stays quiet for it (other panics print as ever).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Chains a hook that says nothing for a panic [`contained`] is catching on this thread.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The error of a Parquet read that panicked. The parquet crate asserts on a negative column-chunk
/// range and divides by zero on some corrupt pages (found by fuzzing): every Parquet read runs
/// under [`contained`].
pub(crate) fn corrupt_parquet(panic: &str) -> String {
    format!("corrupt Parquet data (the reader failed: {panic})")
}

/// Runs `f`; a panic inside it is returned as `Err` with its message.
pub(crate) fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let outer = CONTAINING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(outer));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_and_a_value_passes_through() {
        assert_eq!(contained(|| 7), Ok(7));
        let zero = std::hint::black_box(0);
        assert_eq!(contained(|| 1 / zero), Err("attempt to divide by zero".to_string()));
        assert_eq!(contained(|| panic!("corrupt page {}", 3)), Err::<(), _>("corrupt page 3".to_string()));
        assert!(!CONTAINING.with(Cell::get), "reset after a panic");
    }
}

//! Handing memory the process has freed back to the operating system.
//!
//! glibc's malloc keeps freed memory in its arenas for reuse and returns it to the kernel
//! only from the top of a heap. The predictor's refits allocate and free a lot at once
//! (their working memory grows with the filled grids), so the predictor trims after each
//! refit cycle. Called by hand (through gdb) in an hour soak, a trim released 3.7 and
//! 4.9 MiB; in the next hour soak every cycle's trim released some and took about 0.7 ms.
//! The soak's RSS steps 33–38 minutes in, first taken for memory the allocator kept, were
//! the forecast series' windows filling (see `window::Ring::compact`).

/// Releases free memory at the top and in the middle of every malloc arena
/// (`malloc_trim(0)`). Returns whether any was released. Does nothing, and returns
/// `false`, where the allocator is not glibc's.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only walks the allocator's own free lists,
        // under its locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_releases_memory_freed_in_the_middle_of_the_heap() {
        // Many small blocks; free nine in ten and keep every tenth: the freed runs are in the
        // middle of the heap, where only a trim gives them back.
        let mut blocks: Vec<Option<Vec<u8>>> = (0..20_000).map(|_| Some(vec![1u8; 4096])).collect();
        for (i, b) in blocks.iter_mut().enumerate() {
            if i % 10 != 9 {
                *b = None;
            }
        }
        assert!(
            super::trim(),
            "72 MB freed in the heap's middle, nothing released"
        );
        drop(blocks);
    }
}

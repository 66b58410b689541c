//! Transparent huge pages, chosen by the size of the input.
//!
//! mimalloc asks the kernel for transparent huge pages on its arenas. The kernel then zeroes a
//! whole 2 MiB page on the first touch of each: about 4 ms of CPU in a 50-change `sluice check`,
//! for memory a short-lived command mostly never uses, so `main` turns them off for the process.
//! A large plan is the opposite case: the run touches hundreds of megabytes, and 4 KiB pages
//! cost it hundreds of thousands of page faults (the 10,000-change `sluice check` ran about 25%
//! slower with huge pages off). Commands that read one large plan call
//! [`huge_pages_for_input`] or [`huge_pages_for_bytes`] before parsing it (`check`, `policy
//! eval`, `plan`, and `bench plan` as those would on its generated plan). Not every large run
//! gains: building a million-leaf log in memory was slower with huge pages, so the rule is
//! applied where it was measured, not to every large input.

use std::path::Path;

/// From this input size on, huge pages pay for their zeroing (a 50-change plan is about
/// 0.1 MB; the 10,000-change plan about 20 MB).
pub const HUGE_PAGES_FROM_BYTES: u64 = 4 << 20;

/// Whether an input of `bytes` should run with huge pages (pure).
pub fn wants_huge_pages(bytes: u64) -> bool {
    bytes >= HUGE_PAGES_FROM_BYTES
}

/// Turn transparent huge pages off for this process (the default for short commands).
pub fn small_pages() {
    set_thp_disabled(true);
}

/// Turn huge pages back on when the file at `path` is large. An unreadable file changes
/// nothing: reading it will report the error.
pub fn huge_pages_for_input(path: &Path) {
    if let Ok(m) = std::fs::metadata(path) {
        huge_pages_for_bytes(m.len());
    }
}

/// Turn huge pages back on for an input of `bytes` already in memory (read or generated) when
/// it is large: what is parsed from it is touched from now on.
pub fn huge_pages_for_bytes(bytes: u64) {
    if wants_huge_pages(bytes) {
        set_thp_disabled(false);
    }
}

fn set_thp_disabled(disabled: bool) {
    // The flag is read at page-fault time, so it applies to memory touched from now on.
    // A failure (an old kernel) leaves the default, which is only slower.
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments and touches no memory.
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(disabled),
            0,
            0,
            0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_inputs_get_huge_pages() {
        assert!(!wants_huge_pages(0));
        assert!(!wants_huge_pages(120_000));
        assert!(!wants_huge_pages(HUGE_PAGES_FROM_BYTES - 1));
        assert!(wants_huge_pages(HUGE_PAGES_FROM_BYTES));
        assert!(wants_huge_pages(20_000_000));
    }
}

//! A global allocator that makes a huge allocation request harmless.
//!
//! The generated codecs size a `Vec` from an array count read off the wire before they read
//! the elements (`Vec::with_capacity(n)`). A frame of a few bytes can claim 2^31 elements:
//! the elements would fail to decode, but the allocation comes first, and a request for more
//! memory than the machine has makes the system allocator fail, which aborts the process.
//!
//! This allocator serves every request of [`HUGE_BYTES`] or more with an anonymous mapping
//! made with `MAP_NORESERVE`: the kernel reserves address space only, so the request
//! succeeds, and pages are committed only if they are written. A bogus count therefore costs
//! nothing and the decoder returns its error; a genuine large buffer works as before. All
//! other requests go to the system allocator unchanged.
//!
//! The broker binary and the broker's test binaries install it with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests at least this large are served by `mmap(MAP_NORESERVE)`.
pub const HUGE_BYTES: usize = 256 * 1024 * 1024;
const PAGE_BYTES: usize = 4096;

pub struct NoReserveForHuge;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for NoReserveForHuge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: size is non-zero (>= HUGE_BYTES).
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

/// Threshold above which glibc's `malloc` maps fresh memory instead of reusing its heap.
const MALLOC_MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;
/// Free memory at the top of a glibc heap kept for reuse before it is given back.
const MALLOC_TRIM_THRESHOLD_BYTES: i32 = 256 * 1024 * 1024;

/// glibc heaps (arenas) at most on a machine with `cores`: one per core the runtime's workers
/// run on, at least two.
fn malloc_arenas_max(cores: usize) -> i32 {
    i32::try_from(cores.max(2)).unwrap_or(i32::MAX)
}

/// Keeps the broker's transient large buffers (fetch answers of up to a few MiB per
/// partition, produce requests) in glibc's heap instead of mapping and unmapping them.
///
/// With glibc's defaults a freed buffer of a few MiB is soon given back to the kernel (the top
/// of the heap is trimmed past twice the dynamic mmap threshold), so the next fetch touches
/// fresh pages: in the catch-up read's profile, page faults and zeroing fresh pages were most
/// of the broker's CPU (0.92 core-s for 1 GiB; 0.44 with these settings, see
/// `docs/performance.md`). The price is that up to `MALLOC_TRIM_THRESHOLD_BYTES` of freed
/// memory per heap stays resident.
///
/// It also bounds the number of heaps at one per core. glibc gives a thread that finds the
/// heaps busy a new one, up to eight per core, and a Fetch that waits for the disk hands its
/// worker's place to another thread (`block_in_place`), so the threads that have allocated
/// fetch answers multiply: a catch-up read with a few such reads kept 120 to 150 MB resident
/// in freed answers spread over the heaps, against 31 MB without them. The runtime has one
/// worker per core, and a large buffer is taken about once per request, so the heaps' locks
/// are not contended. Does nothing if the operator set `GLIBC_TUNABLES` (their settings win)
/// or on other C libraries.
pub fn tune_system_allocator() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let heaps = malloc_arenas_max(std::thread::available_parallelism().map_or(2, |n| n.get()));
        // SAFETY: mallopt only changes allocator parameters; called before other threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES);
            libc::mallopt(libc::M_ARENA_MAX, heaps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaps_are_bounded_at_one_per_core_and_at_least_two() {
        for (cores, heaps) in [(1, 2), (2, 2), (8, 8), (usize::MAX, i32::MAX)] {
            assert_eq!(malloc_arenas_max(cores), heaps, "{cores} cores");
        }
    }

    #[test]
    fn given_request_larger_than_memory_when_allocated_should_succeed_without_committing() {
        let a = NoReserveForHuge;
        // 1 TiB: far more than any test machine has.
        let layout = Layout::from_size_align(1 << 40, 8).unwrap();
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        unsafe {
            *p = 7;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn given_growth_across_the_threshold_should_keep_contents() {
        let a = NoReserveForHuge;
        let small = Layout::from_size_align(16, 8).unwrap();
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(9, 16);
            let q = a.realloc(p, small, HUGE_BYTES);
            assert_eq!(*q.add(15), 9);
            let big = Layout::from_size_align(HUGE_BYTES, 8).unwrap();
            let r = a.realloc(q, big, 32);
            assert_eq!(*r.add(15), 9);
            a.dealloc(r, Layout::from_size_align(32, 8).unwrap());
        }
    }
}

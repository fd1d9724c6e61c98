//! The one door between the log and the disk.
//!
//! [`PartitionLog`](crate::PartitionLog) never calls `std::fs` itself: every byte it reads or
//! writes, every file it creates, renames or removes and every fsync goes through a
//! [`Storage`] and the [`StorageFile`]s it opens. [`FsStorage`] is the real implementation;
//! [`crate::testing::FaultyStorage`] wraps any storage and injects short writes, torn writes,
//! failed fsyncs, failed opens (`EMFILE`) and a full disk.
//!
//! # Contract
//!
//! Implementations must behave like POSIX files with `pread`/`pwrite` (see the conformance
//! suite in [`crate::testing::storage_conformance`]):
//!
//! - Writes and reads are positional and take `&self`, so one handle can be shared between a
//!   writer and concurrent readers (`Arc<dyn StorageFile>`). A read of bytes that a completed
//!   write put there returns those bytes, whatever other thread asks.
//! - [`StorageFile::write_at`] may write fewer bytes than asked (a short write) and report how
//!   many; [`StorageFile::write_all_at`] retries until all are written or an error occurs. After
//!   an error, any prefix of the buffer may have reached the file (a torn write): the caller
//!   must treat the bytes at and after `pos` as unknown.
//! - [`StorageFile::sync_data`] returns `Ok` only when every byte written through this handle
//!   before the call, and the file's length, are durable. A failed sync is never retried nor
//!   ignored by the log: the kernel may already have dropped the dirty pages, so the log turns
//!   failed (read-only until reopened, when recovery re-reads what actually is on disk: it
//!   accepts no writes and serves only what earlier fsyncs made durable) and surfaces the
//!   error.
//! - [`Storage::sync_dir`] makes the creation, removal and renaming of the directory's entries
//!   durable. A file created and written is durable only after both its own `sync_data` and a
//!   `sync_dir` of its directory.
//! - [`Storage::rename`] atomically replaces the target, as `rename(2)`.
//! - Errors carry their OS error code where there is one: the log tells a full disk
//!   ([`is_no_space`]) from other failures.
//! - Inside [`memory_only`], a read of a storage that may have to wait for a disk reads only
//!   bytes already in memory and fails with [`io::ErrorKind::WouldBlock`] where it would wait
//!   ([`FsStorage`]: `preadv2` with `RWF_NOWAIT`; where that is unavailable, plain reads after
//!   the first refusal). Storages that never wait ignore it. [`may_block`] lifts the mode.

use std::ffi::OsString;

use bytes::BytesMut;
use std::fmt::Debug;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

/// `errno` for "no space left on device" (the same value on Linux and macOS).
pub const ENOSPC: i32 = 28;
/// `errno` for "disk quota exceeded" on Linux.
pub const EDQUOT: i32 = 122;
/// `errno` for a generic I/O error.
pub const EIO: i32 = 5;
/// `errno` for "too many open files" (the process's limit), on Linux.
pub const EMFILE: i32 = 24;

/// How many times in a row an operation may be interrupted (`EINTR`) before we give up.
const INTERRUPTED_RETRIES_MAX: u32 = 64;

/// True for errors that mean the disk (or the quota) is full: the write did not happen, but
/// nothing is wrong with what is already stored.
pub fn is_no_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
}

/// How [`Storage::open`] opens a file. Every mode opens for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist (`NotFound` otherwise).
    ReadWrite,
    /// Open the file, creating it empty if absent.
    CreateOrOpen,
    /// Create the file; `AlreadyExists` if it is present.
    CreateNew,
}

/// A directory tree of files, as the log sees the disk. Object safe; see the module docs for
/// the contract.
pub trait Storage: Send + Sync + Debug {
    /// Creates `path` and its missing parents. Succeeds if it already exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries of directory `path`, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// Opens the file at `path` for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>>;
    /// Removes a file. Handles already open keep working (as with `unlink(2)`).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file with positional I/O. Object safe; see the module docs for the contract.
pub trait StorageFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at or past the end).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `pos`, extending the file if needed; returns how many
    /// were written, which may be fewer than asked (a short write).
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// Truncates or extends (with zeros) the file to `len_bytes`.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Returns `Ok` only when all bytes written before the call, and the length, are durable.
    fn sync_data(&self) -> io::Result<()>;

    /// Starts writing the `len_bytes` at `pos` to the disk and returns without waiting for
    /// them: a hint that keeps the amount of written-but-unsynced data small, with no
    /// durability promise (only [`StorageFile::sync_data`] gives one). A range past the end is
    /// not an error. The default does nothing.
    fn start_writeback(&self, _pos: u64, _len_bytes: u64) -> io::Result<()> {
        Ok(())
    }

    /// True if the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes all of `buf` at `pos`, retrying short writes. On error, any prefix of `buf` may
    /// have been written.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut written_bytes = 0usize;
        let mut interrupted = 0u32;
        // Bounded: every iteration writes at least one byte, or errors, or counts an EINTR.
        while written_bytes < buf.len() {
            match self.write_at(&buf[written_bytes..], pos + written_bytes as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "storage accepted no bytes",
                    ))
                }
                Ok(n) => {
                    written_bytes += n.min(buf.len() - written_bytes);
                    interrupted = 0;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        && interrupted < INTERRUPTED_RETRIES_MAX =>
                {
                    interrupted += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Fills `buf` from `pos`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let mut read_bytes = 0usize;
        let mut interrupted = 0u32;
        // Bounded: every iteration reads at least one byte, or errors, or counts an EINTR.
        while read_bytes < buf.len() {
            match self.read_at(&mut buf[read_bytes..], pos + read_bytes as u64) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "file ended after {} of {} bytes at position {pos}",
                            read_bytes,
                            buf.len()
                        ),
                    ))
                }
                Ok(n) => {
                    read_bytes += n.min(buf.len() - read_bytes);
                    interrupted = 0;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        && interrupted < INTERRUPTED_RETRIES_MAX =>
                {
                    interrupted += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Appends exactly `len` bytes read at `pos` to `out` (like [`Self::read_exact_at`] into
    /// new room at its end). On error `out` is left as it was. Implementations may read into
    /// `out`'s spare capacity without zeroing it first.
    fn read_exact_into(&self, out: &mut BytesMut, len: usize, pos: u64) -> io::Result<()> {
        let start = out.len();
        out.resize(start + len, 0);
        let read = self.read_exact_at(&mut out[start..], pos);
        if read.is_err() {
            out.truncate(start);
        }
        read
    }
}

thread_local! {
    /// Set inside [`memory_only`] on this thread.
    static MEMORY_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's storage reads limited to bytes already in memory: a read of
/// [`FsStorage`] that would wait for the disk fails with [`io::ErrorKind::WouldBlock`] instead
/// (`preadv2(2)` with `RWF_NOWAIT`; a file system that cannot tell answers the same). An async
/// caller tries a read this way on its runtime thread and, on
/// [`is_would_block`], does it again where blocking is allowed, so that a read from the disk
/// never holds up the other tasks of that thread. Nested calls keep the mode; it is restored
/// when `f` returns or panics.
pub fn memory_only<T>(f: impl FnOnce() -> T) -> T {
    with_memory_only(true, f)
}

/// Runs `f` with this thread's reads allowed to wait for the disk again (the fallback of a
/// read that [`memory_only`] refused, even when called inside that mode). Restored when `f`
/// returns or panics.
pub fn may_block<T>(f: impl FnOnce() -> T) -> T {
    with_memory_only(false, f)
}

/// Runs `f` with the mode `on` or off, then restores it (also when `f` panics).
fn with_memory_only<T>(on: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MEMORY_ONLY.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MEMORY_ONLY.with(|m| m.replace(on)));
    f()
}

/// Whether this thread is inside [`memory_only`].
pub(crate) fn in_memory_only() -> bool {
    MEMORY_ONLY.with(|m| m.get())
}

/// Set when `preadv2` with `RWF_NOWAIT` proved unavailable here (no such system call, the
/// flag refused, or a file system that cannot tell): reads in [`memory_only`] are then plain
/// `pread`s, which may wait on the calling thread, as before the mode existed.
static NOWAIT_UNAVAILABLE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether an error is a read inside [`memory_only`] that would have waited for the disk.
pub fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `pread(2)` of up to `len` bytes at `offset` into `dst`, or, inside [`memory_only`],
/// `preadv2(2)` with `RWF_NOWAIT`.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes and not aliased for the call.
unsafe fn pread_raw(fd: i32, dst: *mut u8, len: usize, offset: libc::off_t) -> io::Result<usize> {
    let n = if in_memory_only() && !NOWAIT_UNAVAILABLE.load(Ordering::Relaxed) {
        let iov = libc::iovec {
            iov_base: dst.cast(),
            iov_len: len,
        };
        // SAFETY: one iovec over `dst`, valid for `len` bytes (the caller's promise).
        let n = unsafe { libc::preadv2(fd, &iov, 1, offset, libc::RWF_NOWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            let would_block = || io::Error::new(io::ErrorKind::WouldBlock, e.to_string());
            return Err(match e.raw_os_error() {
                // Not in memory.
                Some(libc::EAGAIN) => would_block(),
                // The mode is not available here: this read is retried where it may wait,
                // and later ones are plain reads.
                Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                    if !NOWAIT_UNAVAILABLE.swap(true, Ordering::Relaxed) {
                        tracing::info!(error = %e, "reads cannot be limited to memory here \
                            (preadv2 with RWF_NOWAIT); fetches read from the disk on the \
                            thread that serves them");
                    }
                    would_block()
                }
                _ => e,
            });
        }
        n
    } else {
        // SAFETY: as above.
        unsafe { libc::pread(fd, dst.cast(), len, offset) }
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// [`Storage`] over the real file system (`std::fs`, `pread`/`pwrite`, `fdatasync`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FsStorage;

impl FsStorage {
    pub fn new() -> Self {
        FsStorage
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::ReadWrite => {}
            OpenMode::CreateOrOpen => {
                options.create(true);
            }
            OpenMode::CreateNew => {
                options.create_new(true);
            }
        }
        Ok(Box::new(FsFile {
            file: Arc::new(options.open(path)?),
            path: Arc::from(path),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// A file of [`FsStorage`].
#[derive(Debug)]
struct FsFile {
    /// Shared with the writeback thread while a hint for it is queued.
    file: Arc<std::fs::File>,
    /// For the writeback thread's log line.
    path: Arc<Path>,
}

/// A range of a file whose writeback an append asked to start.
struct WritebackHint {
    file: Arc<std::fs::File>,
    path: Arc<Path>,
    pos: u64,
    len_bytes: u64,
}

/// Hints queued for the writeback thread, at most; more are dropped.
const WRITEBACK_HINTS_QUEUED_MAX: usize = 4096;

/// Hints dropped because the queue was full, since the process started.
static WRITEBACK_HINTS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// At most one warning about dropped hints per this interval.
const WRITEBACK_DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts a dropped hint, and logs a warning with the total unless one was logged in the last
/// [`WRITEBACK_DROP_LOG_INTERVAL`] (drops come in bursts, thousands a second).
fn writeback_hint_dropped(path: &Path) {
    static LOGGED_AT: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let dropped = WRITEBACK_HINTS_DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let log_now = {
        let mut logged_at = LOGGED_AT.lock().unwrap_or_else(|e| e.into_inner());
        let due = !matches!(*logged_at, Some(at) if at.elapsed() < WRITEBACK_DROP_LOG_INTERVAL);
        if due {
            *logged_at = Some(std::time::Instant::now());
        }
        due
    };
    if log_now {
        tracing::warn!(
            path = %path.display(),
            dropped_total = dropped,
            queued_max = WRITEBACK_HINTS_QUEUED_MAX,
            "writeback hints dropped: the writeback thread is behind the disk; the kernel \
             writes those pages back on its own schedule (fsyncs and latency may take longer)"
        );
    }
}

/// Writeback hints dropped since the process started (the queue was full).
pub fn writeback_hints_dropped() -> u64 {
    WRITEBACK_HINTS_DROPPED.load(Ordering::Relaxed)
}

/// The queue of the process's one writeback thread (`runnel-writeback`), started on first
/// use. It runs `sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE` only, for each hint in
/// turn: that queues the range's dirty pages for writeback and neither waits for the disk
/// nor touches the error state that a later `fsync` reports, so a failed writeback still
/// fails that `fsync`.
fn writeback_queue() -> &'static mpsc::SyncSender<WritebackHint> {
    static QUEUE: OnceLock<mpsc::SyncSender<WritebackHint>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<WritebackHint>(WRITEBACK_HINTS_QUEUED_MAX);
        let spawned = std::thread::Builder::new()
            .name("runnel-writeback".into())
            .spawn(move || {
                let mut failure_logged = false;
                // Ends when every sender is gone (never, for the static one): bounded by the
                // queue, one hint per iteration.
                while let Ok(hint) = rx.recv() {
                    if let Err(e) = sync_file_range_write(&hint.file, hint.pos, hint.len_bytes) {
                        if !failure_logged {
                            failure_logged = true;
                            tracing::warn!(
                                path = %hint.path.display(),
                                position = hint.pos,
                                len_bytes = hint.len_bytes,
                                error = %e,
                                "cannot start the writeback of appended data; the next fsync \
                                 reports whether it reached the disk (further failures are not \
                                 logged)"
                            );
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            // Without the thread every hint is dropped (the queue fills); nothing else changes.
            tracing::warn!(error = %e, "cannot start the writeback thread; appended data is \
                written back by the kernel alone");
        }
        tx
    })
}

/// `sync_file_range(fd, pos, len_bytes, SYNC_FILE_RANGE_WRITE)`.
fn sync_file_range_write(file: &std::fs::File, pos: u64, len_bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(nbytes)) = (
        libc::off64_t::try_from(pos),
        libc::off64_t::try_from(len_bytes),
    ) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range of {len_bytes} bytes at {pos} beyond what sync_file_range takes"),
        ));
    };
    // SAFETY: a syscall on a descriptor that `file` keeps open; it reads no memory of ours.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            nbytes,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let Ok(offset) = libc::off_t::try_from(pos) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("position {pos} beyond what pread takes"),
            ));
        };
        // SAFETY: `buf` is ours for the call, valid for `buf.len()` bytes.
        unsafe { pread_raw(self.file.as_raw_fd(), buf.as_mut_ptr(), buf.len(), offset) }
    }
    /// `pread(2)` straight into `out`'s spare capacity: the reads that serve fetches do not
    /// zero their buffer first (the memset was a tenth of the catch-up read's broker CPU).
    fn read_exact_into(&self, out: &mut BytesMut, len: usize, pos: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let start = out.len();
        out.reserve(len);
        let mut read_bytes = 0usize;
        let mut interrupted = 0u32;
        // Bounded: every iteration reads at least one byte, or errors, or counts an EINTR.
        while read_bytes < len {
            let offset = pos + read_bytes as u64;
            let Ok(offset) = libc::off_t::try_from(offset) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("position {offset} beyond what pread takes"),
                ));
            };
            // SAFETY: the destination is the `len - read_bytes` bytes of spare capacity after
            // `start + read_bytes`, reserved above and not aliased (`out` is borrowed
            // mutably); pread writes at most that many bytes there and no reference to
            // them exists until `set_len` below marks the ones it wrote initialised.
            let n = unsafe {
                pread_raw(
                    self.file.as_raw_fd(),
                    out.as_mut_ptr().add(start + read_bytes),
                    len - read_bytes,
                    offset,
                )
            };
            match n {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ended after {read_bytes} of {len} bytes at position {pos}"),
                    ))
                }
                Ok(n) => {
                    read_bytes += n.min(len - read_bytes);
                    interrupted = 0;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::Interrupted
                        && interrupted < INTERRUPTED_RETRIES_MAX
                    {
                        interrupted += 1;
                    } else {
                        return Err(e);
                    }
                }
            }
        }
        // SAFETY: pread initialised exactly the `len` bytes after `start` (counted above),
        // within the capacity reserved.
        unsafe { out.set_len(start + len) };
        Ok(())
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        FileExt::write_at(&*self.file, buf, pos)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    /// Hands the range to the writeback thread (see [`writeback_queue`]) and returns at once:
    /// starting a writeback submits the pages to the block layer, which can take tens of
    /// milliseconds on a busy disk, and the appending thread must not wait for that. A hint
    /// that finds the queue full is dropped (the kernel writes those pages back itself),
    /// counted ([`writeback_hints_dropped`]) and logged now and then.
    fn start_writeback(&self, pos: u64, len_bytes: u64) -> io::Result<()> {
        let hint = WritebackHint {
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.path),
            pos,
            len_bytes,
        };
        match writeback_queue().try_send(hint) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(hint)) => {
                writeback_hint_dropped(&hint.path);
                Ok(())
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(io::Error::other("the writeback thread has stopped"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_full_writeback_queue_a_dropped_hint_should_be_counted() {
        let before = writeback_hints_dropped();
        writeback_hint_dropped(Path::new("00000000000000000000.log"));
        writeback_hint_dropped(Path::new("00000000000000000000.log"));
        // Other tests may drop hints meanwhile: at least these two are counted.
        assert!(writeback_hints_dropped() >= before + 2);
    }
}

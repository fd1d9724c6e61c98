//! Bare loops: the work a validating broker cannot leave out, done with nothing around it, and
//! its CPU per byte on this machine, measured in the same run as the workloads.
//!
//! The broker's CPU per GiB moves with the machine (by 20 to 50% between runs on a shared VM),
//! and a target such as "W1 at most 0.5 broker core-seconds per GiB" is only reachable if the
//! work that cannot be left out costs less than that. The bare loops do that work alone, with no
//! protocol, no log structure and no async runtime, and count the CPU of the threads doing it
//! (`getrusage(RUSAGE_THREAD)`), so that a report can set the broker's figure beside it:
//!
//! - **produce**: receive requests over loopback TCP, check each batch's CRC-32C, `pwrite` it at
//!   the end of its partition's file through the page cache, and hint the writeback of each
//!   written batch (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on a second thread), which is what
//!   the broker's produce path does;
//! - **fetch**: `pread` the batches back from the page cache (the files the produce loop just
//!   wrote, as W2 reads what W1 wrote), check each CRC-32C and send the answers over loopback.
//! - **produce, O_DIRECT** ([`produce_direct`]): the produce loop with the page cache left out,
//!   the next step the W1 CPU target would call for. Each checked batch is copied into a
//!   block-aligned buffer of a bounded pool and written with `O_DIRECT` by a few writer threads;
//!   a broker would hold those buffers as its own write-behind cache. Its floor variant receives
//!   each batch straight into an aligned buffer (no copy; a broker cannot, since a batch starts
//!   wherever the request puts it).
//!
//! The client's side of each (the sending or receiving thread) is not counted.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// Writeback hints queued at most (the broker's queue holds 4,096).
const HINTS_QUEUED_MAX: usize = 4096;

/// `O_DIRECT` writes whole blocks from block-aligned memory at block-aligned positions.
const DIRECT_BLOCK_BYTES: usize = 4096;

/// Writer threads of the O_DIRECT loop: writes in flight at once.
const DIRECT_WRITERS: usize = 4;

/// Bytes of aligned buffers the O_DIRECT loop holds (see [`direct_pool_buffers`]).
const DIRECT_POOL_BYTES: usize = 64 << 20;

/// Largest request (partitions × batch bytes) a loop takes: it holds about three of them in
/// memory (the sender's, the receiver's, one batch's worth of values).
pub const REQUEST_BYTES_MAX: usize = 256 << 20;

/// One bare loop's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bare {
    pub bytes: u64,
    pub secs: f64,
    /// CPU seconds of the threads doing the broker's part (user + system).
    pub cpu_secs: f64,
}

impl Bare {
    pub fn cpu_secs_per_gib(&self) -> f64 {
        self.cpu_secs / (self.bytes as f64 / (1u64 << 30) as f64)
    }
}

/// The shape of the traffic: `partitions` batches of `batch_bytes` per request (or answer).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    partitions: usize,
    batch_bytes: usize,
}

impl Shape {
    /// At least one partition and 4 KiB batches; requests up to [`REQUEST_BYTES_MAX`].
    pub fn new(partitions: usize, batch_bytes: usize) -> io::Result<Shape> {
        let shape = Shape {
            partitions: partitions.max(1),
            batch_bytes: batch_bytes.max(4096),
        };
        match shape.partitions.checked_mul(shape.batch_bytes) {
            Some(n) if n <= REQUEST_BYTES_MAX => Ok(shape),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} batches of {} bytes per request: more than {REQUEST_BYTES_MAX} bytes",
                    shape.partitions, shape.batch_bytes
                ),
            )),
        }
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    fn request_bytes(&self) -> usize {
        self.partitions * self.batch_bytes
    }

    /// Whole requests in `bytes`, and at least one (which may be more than `bytes`).
    fn requests(&self, bytes: u64) -> u64 {
        (bytes / self.request_bytes() as u64).max(1)
    }

    /// The bytes a loop asked for `bytes` moves: [`requests`](Self::requests) whole requests.
    pub fn bytes_moved(&self, bytes: u64) -> u64 {
        self.requests(bytes) * self.request_bytes() as u64
    }
}

/// CPU seconds (user + system) of the calling thread so far.
pub(super) fn thread_cpu_secs() -> io::Result<f64> {
    // SAFETY: `getrusage` fills the zeroed struct we own; RUSAGE_THREAD is Linux's.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// A batch's worth of the workloads' values: 1 KiB records, half of each random bytes.
pub(super) fn batch_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|i| {
            if i % 1024 < 512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                b'v'
            }
        })
        .collect()
}

/// `Ok` if `batch`'s CRC-32C is `expected`; otherwise an error naming where it was (`what`).
fn check_crc(batch: &[u8], expected: u32, what: &str) -> io::Result<()> {
    if crc32c::crc32c(batch) == expected {
        Ok(())
    } else {
        Err(io_other(&format!("a batch {what} with the wrong CRC-32C")))
    }
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("a thread for the bare loop")
}

fn io_other(what: &str) -> io::Error {
    io::Error::other(what.to_string())
}

/// `sync_file_range(fd, pos, len, SYNC_FILE_RANGE_WRITE)`: start the writeback, do not wait.
fn start_writeback(file: &File, pos: u64, len: usize) {
    let (Ok(pos), Ok(len)) = (libc::off64_t::try_from(pos), libc::off64_t::try_from(len)) else {
        return;
    };
    // SAFETY: a syscall on a descriptor `file` keeps open; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), pos, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn partition_files(dir: &Path, partitions: usize, create: bool) -> io::Result<Vec<File>> {
    (0..partitions)
        .map(|p| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(create)
                .create(create)
                .truncate(create)
                .open(dir.join(format!("bare-{p}.log")))
        })
        .collect()
}

/// New files opened with `O_DIRECT`, one per partition; `ErrorKind::Unsupported` where the
/// file system refuses the flag.
fn direct_files(dir: &Path, partitions: usize) -> io::Result<Vec<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    (0..partitions)
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(dir.join(format!("bare-direct-{p}.log")))
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EINVAL) => io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("the file system of {} refuses O_DIRECT", dir.display()),
                    ),
                    _ => e,
                })
        })
        .collect()
}

/// `Ok` if direct I/O on `file` goes around the page cache with alignments that
/// [`DIRECT_BLOCK_BYTES`] satisfies, as `statx(STATX_DIOALIGN)` reports (Linux 6.1 and
/// later). A file system that takes `O_DIRECT` without reporting its alignments (tmpfs, which
/// serves it from the page cache) or a kernel without the field gives `Unsupported`: the loop
/// would measure page-cache writes under another name.
fn check_direct_io(file: &File, dir: &Path) -> io::Result<()> {
    let unsupported = |why: String| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "no direct I/O on the file system of {}: {why}",
                dir.display()
            ),
        )
    };
    // SAFETY: `statx` fills the zeroed struct we own; an empty path with AT_EMPTY_PATH names
    // the descriptor, which `file` keeps open.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(unsupported(format!(
            "statx: {}",
            io::Error::last_os_error()
        )));
    }
    let mem = stx.stx_dio_mem_align as usize;
    let offset = stx.stx_dio_offset_align as usize;
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 || mem == 0 || offset == 0 {
        return Err(unsupported("statx reports no direct I/O alignment".into()));
    }
    if !DIRECT_BLOCK_BYTES.is_multiple_of(mem) || !DIRECT_BLOCK_BYTES.is_multiple_of(offset) {
        return Err(unsupported(format!(
            "it needs memory aligned to {mem} and offsets to {offset} bytes; the loop aligns to {DIRECT_BLOCK_BYTES}"
        )));
    }
    Ok(())
}

/// A buffer starting on a [`DIRECT_BLOCK_BYTES`] boundary, for `O_DIRECT` writes.
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let buf = vec![0u8; len + DIRECT_BLOCK_BYTES];
        let start = buf.as_ptr().align_offset(DIRECT_BLOCK_BYTES);
        assert!(
            start < DIRECT_BLOCK_BYTES,
            "u8 memory aligns within a block"
        );
        Aligned { buf, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// How the O_DIRECT loop gets a batch into an aligned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectInput {
    /// Receive the request, then copy each checked batch into an aligned buffer (what a broker
    /// would have to do).
    CopyFromRequest,
    /// Receive each batch straight into an aligned buffer (the floor: no copy).
    ReceiveAligned,
}

/// The receiving end of a produce loop's connection, and the thread sending to it.
struct Sending {
    /// Whole requests the thread sends.
    requests: u64,
    /// The CRC-32C of every batch sent.
    crc_expected: u32,
    conn: TcpStream,
    client: std::thread::JoinHandle<io::Result<()>>,
}

/// Starts a thread sending `bytes` (whole requests, at least one) of `shape` over loopback.
fn sending(bytes: u64, shape: Shape) -> io::Result<Sending> {
    let batch = batch_bytes(shape.batch_bytes);
    let crc_expected = crc32c::crc32c(&batch);
    let requests = shape.requests(bytes);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // Connected before the sending thread starts, so that no error leaves a thread or this
    // one waiting for the other (a loopback connect completes from the listen queue).
    let mut client_end = TcpStream::connect(listener.local_addr()?)?;
    let (conn, _) = listener.accept()?;
    let client = spawn_named("bare-client", move || -> io::Result<()> {
        let request = batch.repeat(shape.partitions);
        for _ in 0..requests {
            client_end.write_all(&request)?;
        }
        Ok(())
    });
    Ok(Sending {
        requests,
        crc_expected,
        conn,
        client,
    })
}

/// The produce loop, writing one file per partition into `dir` (which it leaves in place for
/// [`fetch`]). Moves `bytes` rounded down to whole requests (at least one).
pub fn produce(dir: &Path, bytes: u64, shape: Shape) -> io::Result<Bare> {
    let files = partition_files(dir, shape.partitions, true)?;
    let Sending {
        requests,
        crc_expected,
        mut conn,
        client,
    } = sending(bytes, shape)?;
    let (hints, hints_rx) = mpsc::sync_channel::<(usize, u64)>(HINTS_QUEUED_MAX);
    let hint_files = files
        .iter()
        .map(File::try_clone)
        .collect::<io::Result<Vec<_>>>()?;
    let writeback = spawn_named("bare-writeback", move || -> io::Result<f64> {
        let cpu_start = thread_cpu_secs()?;
        // Ends when the sender is dropped; one hint per iteration, bounded by the queue.
        while let Ok((p, pos)) = hints_rx.recv() {
            start_writeback(&hint_files[p], pos, shape.batch_bytes);
        }
        Ok(thread_cpu_secs()? - cpu_start)
    });
    let started = Instant::now();
    let cpu_start = thread_cpu_secs();
    let result = (|| -> io::Result<()> {
        let mut request = vec![0u8; shape.request_bytes()];
        let mut ends = vec![0u64; shape.partitions];
        for _ in 0..requests {
            conn.read_exact(&mut request)?;
            for (p, batch) in request.chunks(shape.batch_bytes).enumerate() {
                check_crc(batch, crc_expected, "arrived")?;
                files[p].write_all_at(batch, ends[p])?;
                // A full queue drops the hint, as the broker's does.
                let _ = hints.try_send((p, ends[p]));
                ends[p] += batch.len() as u64;
            }
        }
        Ok(())
    })();
    let cpu_end = thread_cpu_secs();
    let secs = started.elapsed().as_secs_f64();
    drop(hints);
    drop(conn);
    let writeback_cpu_secs = writeback
        .join()
        .map_err(|_| io_other("the writeback thread panicked"))?;
    let sent = client
        .join()
        .map_err(|_| io_other("the sending thread panicked"))?;
    result?;
    sent?;
    let cpu_secs = cpu_end? - cpu_start?;
    let writeback_cpu_secs = writeback_cpu_secs?;
    Ok(Bare {
        bytes: requests * shape.request_bytes() as u64,
        secs,
        cpu_secs: cpu_secs + writeback_cpu_secs,
    })
}

/// The produce loop without the page cache: `O_DIRECT` writes from a bounded pool of aligned
/// buffers, [`DIRECT_WRITERS`] at a time, into `bare-direct-{p}.log` files of `dir` (removed
/// before it returns, whatever happened). Batches must be whole 4 KiB blocks
/// (`InvalidInput`); a file system without direct I/O gives `Unsupported`. Moves `bytes`
/// rounded down to whole requests (at least one). CPU counted: the receiving thread and the
/// writers.
pub fn produce_direct(
    dir: &Path,
    bytes: u64,
    shape: Shape,
    input: DirectInput,
) -> io::Result<Bare> {
    if !shape.batch_bytes.is_multiple_of(DIRECT_BLOCK_BYTES) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "O_DIRECT writes whole {DIRECT_BLOCK_BYTES}-byte blocks; batches of {} bytes are not",
                shape.batch_bytes
            ),
        ));
    }
    let measured = direct_files(dir, shape.partitions).and_then(|files| {
        check_direct_io(&files[0], dir)?;
        produce_direct_into(Arc::new(files), bytes, shape, input)
    });
    for p in 0..shape.partitions {
        let _ = std::fs::remove_file(dir.join(format!("bare-direct-{p}.log")));
    }
    measured
}

/// Buffers in the O_DIRECT loop's pool: [`DIRECT_POOL_BYTES`] worth, 2 to 32 of them (so two
/// batches when a batch is over 32 MiB: at most 512 MiB under [`REQUEST_BYTES_MAX`]).
fn direct_pool_buffers(batch_bytes: usize) -> usize {
    (DIRECT_POOL_BYTES / batch_bytes.max(1)).clamp(2, 32)
}

fn produce_direct_into(
    files: Arc<Vec<File>>,
    bytes: u64,
    shape: Shape,
    input: DirectInput,
) -> io::Result<Bare> {
    let Sending {
        requests,
        crc_expected,
        mut conn,
        client,
    } = sending(bytes, shape)?;
    // The pool: buffers go to a writer with their position and come back once written. Every
    // sender of `free` is a writer's, so a loop whose writers all failed stops waiting, and at
    // most `buffers` exist, so no send waits for room.
    let buffers = direct_pool_buffers(shape.batch_bytes);
    let (free, free_rx) = mpsc::sync_channel::<Aligned>(buffers);
    for _ in 0..buffers {
        free.send(Aligned::new(shape.batch_bytes))
            .map_err(|_| io_other("the buffer pool closed"))?;
    }
    let (writes, writes_rx) = mpsc::sync_channel::<(usize, u64, Aligned)>(buffers);
    let writes_rx = Arc::new(Mutex::new(writes_rx));
    let writers: Vec<_> = (0..DIRECT_WRITERS)
        .map(|_| {
            let (files, writes_rx, free) = (files.clone(), writes_rx.clone(), free.clone());
            spawn_named("bare-direct-writer", move || -> io::Result<f64> {
                let cpu_start = thread_cpu_secs()?;
                loop {
                    // Ends when the loop drops the sender, or on the first failed write.
                    let next = writes_rx
                        .lock()
                        .map_err(|_| io_other("a writer panicked"))?
                        .recv();
                    let Ok((p, pos, buffer)) = next else { break };
                    files[p].write_all_at(buffer.bytes(), pos)?;
                    if free.send(buffer).is_err() {
                        break;
                    }
                }
                Ok(thread_cpu_secs()? - cpu_start)
            })
        })
        .collect();
    drop(free);
    drop(writes_rx);
    let started = Instant::now();
    let cpu_start = thread_cpu_secs();
    let result = (|| -> io::Result<()> {
        let closed = || io_other("the O_DIRECT writers stopped");
        let checked = |batch: &[u8]| check_crc(batch, crc_expected, "arrived");
        let mut request = match input {
            DirectInput::CopyFromRequest => vec![0u8; shape.request_bytes()],
            DirectInput::ReceiveAligned => Vec::new(),
        };
        let mut ends = vec![0u64; shape.partitions];
        for _ in 0..requests {
            if input == DirectInput::CopyFromRequest {
                conn.read_exact(&mut request)?;
            }
            for (p, end) in ends.iter_mut().enumerate() {
                let mut buffer = free_rx.recv().map_err(|_| closed())?;
                match input {
                    DirectInput::CopyFromRequest => {
                        let batch = &request[p * shape.batch_bytes..(p + 1) * shape.batch_bytes];
                        checked(batch)?;
                        buffer.bytes_mut().copy_from_slice(batch);
                    }
                    DirectInput::ReceiveAligned => {
                        conn.read_exact(buffer.bytes_mut())?;
                        checked(buffer.bytes())?;
                    }
                }
                writes.send((p, *end, buffer)).map_err(|_| closed())?;
                *end += shape.batch_bytes as u64;
            }
        }
        Ok(())
    })();
    drop(writes);
    drop(conn);
    let cpu_end = thread_cpu_secs();
    // Every thread is joined before any error is returned.
    let mut writers_cpu_secs = 0.0;
    let mut written = Ok(());
    for w in writers {
        match w.join() {
            Ok(Ok(secs)) => writers_cpu_secs += secs,
            Ok(Err(e)) => written = Err(e),
            Err(_) => written = Err(io_other("a writer panicked")),
        }
    }
    // Every write has returned: the time includes the last one.
    let secs = started.elapsed().as_secs_f64();
    let sent = client.join();
    written?;
    result?;
    sent.map_err(|_| io_other("the sending thread panicked"))??;
    Ok(Bare {
        bytes: requests * shape.request_bytes() as u64,
        secs,
        cpu_secs: cpu_end? - cpu_start? + writers_cpu_secs,
    })
}

/// Where the fetch loop takes the batches it checks and sends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFrom {
    /// `pread` into the answer (a copy out of the page cache), as the broker does.
    Read,
    /// A shared read-only mapping of each file: the check reads the page cache in place and the
    /// send copies from it. Not safe for a broker: a page evicted between the check and the
    /// send would be read again from the disk and sent unverified.
    Mapping,
    /// [`Mapping`](Self::Mapping) with each batch's pages locked in memory (`mlock`) from
    /// before the check until after the send, so the bytes sent are the bytes checked.
    PinnedMapping,
}

/// A file mapped read-only and shared, unmapped on drop.
struct Mapped {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl Mapped {
    /// Maps all of `file`, which must not be empty. The bare loop's own scratch files are
    /// neither written nor truncated while mapped (a truncation would fault the reader).
    fn new(file: &File) -> io::Result<Mapped> {
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Err(io_other("an empty file cannot be mapped"));
        }
        // SAFETY: a fresh read-only shared mapping of a descriptor that stays open for the
        // call; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or_else(|| io_other("mmap gave null"))?;
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until drop; nothing writes them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Pages of a slice locked in memory (`mlock`) until drop. `Unsupported` when the process
/// may not lock that much (`RLIMIT_MEMLOCK`, no `CAP_IPC_LOCK`).
struct Pinned<'a>(&'a [u8]);

impl<'a> Pinned<'a> {
    fn new(bytes: &'a [u8]) -> io::Result<Pinned<'a>> {
        // SAFETY: locks pages of memory the slice borrows; it reads or writes none of ours.
        if unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) } != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOMEM | libc::EPERM) => io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "mlock of {} bytes refused: {e} (RLIMIT_MEMLOCK)",
                        bytes.len()
                    ),
                ),
                _ => e,
            });
        }
        Ok(Pinned(bytes))
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocks the pages `new` locked.
        unsafe {
            libc::munlock(self.0.as_ptr().cast(), self.0.len());
        }
    }
}

/// Writes every slice, in order, with vectored writes.
fn write_all_vectored(conn: &mut TcpStream, slices: &[&[u8]]) -> io::Result<()> {
    let mut iov: Vec<io::IoSlice> = slices.iter().map(|s| io::IoSlice::new(s)).collect();
    let mut rest = &mut iov[..];
    while !rest.is_empty() {
        match conn.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The fetch loop: reads back what [`produce`] wrote to `dir` (each answer one batch per
/// partition, taken as `from` says, CRC-32C checked), and sends the answers over loopback.
/// Moves `bytes` rounded down to whole answers, and at most what the files hold.
pub fn fetch(dir: &Path, bytes: u64, shape: Shape, from: FetchFrom) -> io::Result<Bare> {
    let files = partition_files(dir, shape.partitions, false)?;
    let crc_expected = crc32c::crc32c(&batch_bytes(shape.batch_bytes));
    let held = files[0].metadata()?.len() / shape.batch_bytes as u64;
    let answers = shape.requests(bytes).min(held);
    if answers == 0 {
        return Err(io_other("the produce loop left nothing to read"));
    }
    let maps = match from {
        FetchFrom::Read => Vec::new(),
        FetchFrom::Mapping | FetchFrom::PinnedMapping => {
            files.iter().map(Mapped::new).collect::<io::Result<_>>()?
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // Connected before the receiving thread starts (see `produce`).
    let mut conn = TcpStream::connect(listener.local_addr()?)?;
    let client = spawn_named("bare-client", move || super::drain_connection(listener));
    let started = Instant::now();
    let cpu_start = thread_cpu_secs();
    let result = (|| -> io::Result<()> {
        let checked = |batch: &[u8]| check_crc(batch, crc_expected, "read back");
        let mut answer = match from {
            FetchFrom::Read => vec![0u8; shape.request_bytes()],
            FetchFrom::Mapping | FetchFrom::PinnedMapping => Vec::new(),
        };
        for a in 0..answers {
            let pos = a * shape.batch_bytes as u64;
            if from == FetchFrom::Read {
                for (p, batch) in answer.chunks_mut(shape.batch_bytes).enumerate() {
                    files[p].read_exact_at(batch, pos)?;
                    checked(batch)?;
                }
                conn.write_all(&answer)?;
                continue;
            }
            // Every file holds at least `answers` batches (`held`).
            let start = pos as usize;
            let batches: Vec<&[u8]> = maps
                .iter()
                .map(|m| &m.bytes()[start..start + shape.batch_bytes])
                .collect();
            let pins = match from {
                FetchFrom::PinnedMapping => batches
                    .iter()
                    .map(|b| Pinned::new(b))
                    .collect::<io::Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            for batch in &batches {
                checked(batch)?;
            }
            write_all_vectored(&mut conn, &batches)?;
            drop(pins);
        }
        conn.shutdown(std::net::Shutdown::Write)
    })();
    let cpu_end = thread_cpu_secs();
    drop(conn);
    let received = client
        .join()
        .map_err(|_| io_other("the receiving thread panicked"))?;
    let secs = started.elapsed().as_secs_f64();
    result?;
    let moved = answers * shape.request_bytes() as u64;
    if received? != moved {
        return Err(io_other("the receiving thread did not get every answer"));
    }
    Ok(Bare {
        bytes: moved,
        secs,
        cpu_secs: cpu_end? - cpu_start?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_small_shape_the_bare_loops_move_whole_requests_and_read_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(3, 64 << 10).unwrap();
        // 1 MiB is 5 requests of 192 KiB and change: rounded down to 5.
        let p = produce(dir.path(), 1 << 20, shape).unwrap();
        assert_eq!(p.bytes, 5 * 3 * (64 << 10));
        assert!(p.secs > 0.0 && p.cpu_secs >= 0.0);
        for i in 0..3 {
            let len = std::fs::metadata(dir.path().join(format!("bare-{i}.log")))
                .unwrap()
                .len();
            assert_eq!(len, 5 * (64 << 10));
        }
        // Asking for more than was written reads what is there.
        for from in [
            FetchFrom::Read,
            FetchFrom::Mapping,
            FetchFrom::PinnedMapping,
        ] {
            match fetch(dir.path(), 4 << 20, shape, from) {
                Ok(f) => assert_eq!(f.bytes, p.bytes, "{from:?}"),
                // A sandbox may forbid locking memory.
                Err(e)
                    if from == FetchFrom::PinnedMapping
                        && e.kind() == io::ErrorKind::Unsupported =>
                {
                    eprintln!("not checked here: {e}")
                }
                Err(e) => panic!("{from:?}: {e}"),
            }
        }
    }

    #[test]
    fn given_a_corrupted_batch_the_fetch_loop_fails_instead_of_sending_it() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(2, 4096).unwrap();
        produce(dir.path(), 4 * 8192, shape).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("bare-1.log"))
            .unwrap();
        f.write_all_at(b"X", 4096 + 17).unwrap();
        for from in [
            FetchFrom::Read,
            FetchFrom::Mapping,
            FetchFrom::PinnedMapping,
        ] {
            match fetch(dir.path(), 4 * 8192, shape, from) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => eprintln!("not checked: {e}"),
                Err(e) => assert!(e.to_string().contains("CRC-32C"), "{from:?}: {e}"),
                Ok(_) => panic!("{from:?} sent a corrupted batch"),
            }
        }
    }

    #[test]
    fn given_a_small_shape_the_o_direct_loops_move_whole_requests_and_leave_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(3, 64 << 10).unwrap();
        for input in [DirectInput::CopyFromRequest, DirectInput::ReceiveAligned] {
            match produce_direct(dir.path(), 1 << 20, shape, input) {
                Ok(p) => {
                    assert_eq!(p.bytes, 5 * 3 * (64 << 10), "{input:?}");
                    assert!(p.secs > 0.0 && p.cpu_secs >= 0.0);
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    eprintln!("not checked here: {e}");
                    return;
                }
                Err(e) => panic!("{input:?}: {e}"),
            }
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(left.is_empty(), "{input:?} left {left:?}");
        }
    }

    #[test]
    fn given_writes_that_fail_the_o_direct_loop_returns_the_error_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(2, 64 << 10).unwrap();
        // Read-only descriptors: every write fails (EBADF), as a full or failing disk would.
        let files: Vec<File> = (0..2)
            .map(|p| {
                let path = dir.path().join(format!("ro-{p}"));
                std::fs::write(&path, b"").unwrap();
                File::open(&path).unwrap()
            })
            .collect();
        for input in [DirectInput::CopyFromRequest, DirectInput::ReceiveAligned] {
            // More requests than the pool has buffers, so the loop must notice the writers stopped.
            let e = produce_direct_into(
                Arc::new(files.iter().map(|f| f.try_clone().unwrap()).collect()),
                64 << 20,
                shape,
                input,
            )
            .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{input:?}: {e}");
        }
    }

    #[test]
    fn the_o_direct_pool_holds_64_mib_of_buffers_and_between_2_and_32_of_them() {
        assert_eq!(direct_pool_buffers(1 << 20), 32);
        assert_eq!(direct_pool_buffers(4 << 20), 16);
        assert_eq!(direct_pool_buffers(64 << 20), 2);
        assert_eq!(direct_pool_buffers(256 << 20), 2);
    }

    #[test]
    fn the_o_direct_loop_refuses_batches_that_are_not_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape::new(2, 4096 + 512).unwrap();
        let e =
            produce_direct(dir.path(), 1 << 20, shape, DirectInput::CopyFromRequest).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn an_aligned_buffer_starts_on_a_block_boundary_and_has_its_length() {
        for len in [4096, 64 << 10, 1 << 20] {
            let mut a = Aligned::new(len);
            assert_eq!(a.bytes().as_ptr() as usize % DIRECT_BLOCK_BYTES, 0);
            assert_eq!(a.bytes_mut().len(), len);
        }
    }

    #[test]
    fn a_shape_is_bounded_and_moves_whole_requests() {
        let shape = Shape::new(8, 1 << 20).unwrap();
        assert_eq!(shape.bytes_moved(3 << 20), 8 << 20, "at least one request");
        assert_eq!(shape.bytes_moved((17 << 20) + 5), 16 << 20);
        assert_eq!(Shape::new(0, 1).unwrap().bytes_moved(0), 4096);
        assert!(Shape::new(257, 1 << 20).is_err());
        assert!(Shape::new(usize::MAX, 1 << 20).is_err());
    }

    #[test]
    fn the_cpu_per_gib_is_the_cpu_over_the_gibibytes() {
        let f = Bare {
            bytes: 2 << 30,
            secs: 1.0,
            cpu_secs: 1.5,
        };
        assert_eq!(f.cpu_secs_per_gib(), 0.75);
    }
}

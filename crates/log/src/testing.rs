//! Test support: [`FaultyStorage`], a [`Storage`] wrapper that injects disk faults,
//! [`PowerLossStorage`], one that models the page cache and can cut the power,
//! [`storage_conformance`], the checks every [`Storage`] implementation must pass, and batch
//! builders for idempotent producers ([`producer_batch`], [`set_producer`]).
//!
//! Compiled into the crate (no feature flag) so the broker's and other crates' tests can use
//! them too. Nothing here is used by the log itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{OpenMode, Storage, StorageFile, EIO, EMFILE, ENOSPC};

/// What the next matching write does instead of writing normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFault {
    /// Write nothing and fail with `EIO`.
    Fail,
    /// Write the first `prefix_bytes` bytes, then fail with `EIO` (a torn write).
    Torn { prefix_bytes: usize },
    /// Write the first `prefix_bytes` bytes, then fail with `ENOSPC` (the disk filled up).
    NoSpace { prefix_bytes: usize },
    /// Write at most `max_bytes` (at least 1) and report that count: a legal short write that
    /// the caller must retry.
    Short { max_bytes: usize },
    /// Write the first `prefix_bytes` bytes, then "crash" (see [`FaultyStorage::crash`]) and
    /// fail with `EIO`: the process died mid-write, so the torn prefix stays on disk and
    /// nothing can undo it.
    TornThenCrash { prefix_bytes: usize },
}

/// How many writeback hints [`FaultyStorage::writebacks`] keeps.
const WRITEBACKS_KEPT_MAX: usize = 1024;

#[derive(Debug, Default)]
struct Plan {
    /// `(path suffix, fault)`: the next write to a path ending in the suffix gets the fault.
    next_write: Option<(String, WriteFault)>,
    /// The next `sync_data`/`sync_dir` of a path ending in the suffix fails with `EIO`.
    next_sync: Option<String>,
    /// The next `start_writeback` fails with `EIO`.
    next_writeback_fails: bool,
    /// The next open of a path ending in the suffix fails with `EMFILE`.
    next_open: Option<String>,
    /// Handles open now, by the path they were opened by.
    open_handles: HashMap<PathBuf, u64>,
    /// The last writeback hints, `(path, pos, len_bytes)`, oldest first; at most
    /// [`WRITEBACKS_KEPT_MAX`].
    writebacks: VecDeque<(PathBuf, u64, u64)>,
    /// Every operation fails with `EIO` (the process lost its disk, or "crashed": nothing it
    /// does reaches the files any more, not even undoing a torn write).
    crashed: bool,
    writes: u64,
    syncs: u64,
    injected: u64,
    /// Mutating operations attempted so far (see [`FaultyStorage::mutation_count`]).
    mutations: u64,
    /// The mutation with this count "crashes" the process: it fails and so does everything
    /// after it.
    crash_at_mutation: Option<u64>,
}

/// A [`Storage`] that passes every call to `inner` until told to fail one. Faults are armed
/// through the shared handle (`Arc<FaultyStorage>`) while the log uses the same instance.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    plan: Arc<Mutex<Plan>>,
}

/// An injected error. It carries the real `errno`, so the log tells a full disk from other
/// failures exactly as it would for the OS's own errors.
fn injected(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl FaultyStorage {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(FaultyStorage {
            inner,
            plan: Arc::new(Mutex::new(Plan::default())),
        })
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        lock_plan(&self.plan)
    }

    /// The next write to a file whose path ends with `path_suffix` (`""`: any file) gets
    /// `fault`. Replaces a fault not yet triggered.
    pub fn fail_next_write(&self, path_suffix: &str, fault: WriteFault) {
        self.plan().next_write = Some((path_suffix.to_string(), fault));
    }

    /// The next fsync (`sync_data` or `sync_dir`) of a path ending with `path_suffix` fails
    /// with `EIO` without syncing anything.
    pub fn fail_next_sync(&self, path_suffix: &str) {
        self.plan().next_sync = Some(path_suffix.to_string());
    }

    /// The next open of a path ending with `path_suffix` fails with `EMFILE`, as when the
    /// process has no file handles left; nothing is created.
    pub fn fail_next_open(&self, path_suffix: &str) {
        self.plan().next_open = Some(path_suffix.to_string());
    }

    /// Handles open now on files whose path (when opened) ends with `path_suffix`.
    pub fn open_handle_count(&self, path_suffix: &str) -> u64 {
        self.plan()
            .open_handles
            .iter()
            .filter(|(path, _)| path_matches(path, path_suffix))
            .map(|(_, count)| count)
            .sum()
    }

    /// From now on every operation fails with `EIO`, as if the process had died: what is on
    /// disk stays exactly as the last successful operation left it.
    pub fn crash(&self) {
        self.plan().crashed = true;
    }

    /// Clears armed faults and the crashed state.
    pub fn heal(&self) {
        let mut plan = self.plan();
        plan.next_write = None;
        plan.next_sync = None;
        plan.next_writeback_fails = false;
        plan.next_open = None;
        plan.crashed = false;
        plan.crash_at_mutation = None;
    }

    /// Lets `operations` more mutating operations succeed, then "crashes" (see
    /// [`FaultyStorage::crash`]) at the next one, which does not happen. Mutating operations:
    /// creating a directory, opening a file in a creating mode, a write, `set_len`, an fsync
    /// of a file or directory, a rename, a removal. Enumerating `operations` from 0 up to the
    /// count of a whole operation crashes it at every step.
    pub fn crash_after_mutations(&self, operations: u64) {
        let mut plan = self.plan();
        plan.crash_at_mutation = Some(plan.mutations + operations);
    }

    /// Mutating operations attempted so far (including failed ones).
    pub fn mutation_count(&self) -> u64 {
        self.plan().mutations
    }

    /// Writes attempted so far (including failed ones).
    pub fn write_count(&self) -> u64 {
        self.plan().writes
    }

    /// fsyncs attempted so far (including failed ones).
    pub fn sync_count(&self) -> u64 {
        self.plan().syncs
    }

    /// The next `start_writeback` (a hint, which the log must survive failing) fails with
    /// `EIO`.
    pub fn fail_next_writeback(&self) {
        self.plan().next_writeback_fails = true;
    }

    /// The last writeback hints, `(path, pos, len_bytes)`, oldest first (at most 1,024).
    pub fn writebacks(&self) -> Vec<(PathBuf, u64, u64)> {
        self.plan().writebacks.iter().cloned().collect()
    }

    /// Faults injected so far.
    pub fn injected_count(&self) -> u64 {
        self.plan().injected
    }

    fn check_crashed(&self) -> io::Result<()> {
        check_crashed(&self.plan())
    }

    fn mutation(&self) -> io::Result<()> {
        check_mutation(&mut self.plan())
    }

    fn take_sync_fault(plan: &Mutex<Plan>, path: &Path) -> io::Result<()> {
        let mut plan = lock_plan(plan);
        check_mutation(&mut plan)?;
        plan.syncs += 1;
        if let Some(suffix) = &plan.next_sync {
            if path_matches(path, suffix) {
                plan.next_sync = None;
                plan.injected += 1;
                return Err(injected(EIO));
            }
        }
        Ok(())
    }
}

fn lock_plan(plan: &Mutex<Plan>) -> MutexGuard<'_, Plan> {
    plan.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn check_crashed(plan: &Plan) -> io::Result<()> {
    if plan.crashed {
        Err(injected(EIO))
    } else {
        Ok(())
    }
}

/// Counts a mutating operation, crashing at the armed count.
fn check_mutation(plan: &mut Plan) -> io::Result<()> {
    check_crashed(plan)?;
    if plan.crash_at_mutation == Some(plan.mutations) {
        plan.crashed = true;
        plan.injected += 1;
        return Err(injected(EIO));
    }
    plan.mutations += 1;
    Ok(())
}

fn path_matches(path: &Path, suffix: &str) -> bool {
    path.as_os_str()
        .to_str()
        .is_some_and(|p| p.ends_with(suffix))
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.mutation()?;
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.check_crashed()?;
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        if mode == OpenMode::ReadWrite {
            self.check_crashed()?;
        } else {
            self.mutation()?;
        }
        {
            let mut plan = self.plan();
            if plan
                .next_open
                .as_deref()
                .is_some_and(|suffix| path_matches(path, suffix))
            {
                plan.next_open = None;
                plan.injected += 1;
                return Err(injected(EMFILE));
            }
        }
        let inner = self.inner.open(path, mode)?;
        *self
            .plan()
            .open_handles
            .entry(path.to_path_buf())
            .or_default() += 1;
        Ok(Box::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            plan: Arc::clone(&self.plan),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.mutation()?;
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutation()?;
        self.inner.rename(from, to)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.mutation()?;
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        FaultyStorage::take_sync_fault(&self.plan, path)?;
        self.inner.sync_dir(path)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn StorageFile>,
    path: PathBuf,
    plan: Arc<Mutex<Plan>>,
}

impl Drop for FaultyFile {
    fn drop(&mut self) {
        let mut plan = lock_plan(&self.plan);
        if let Some(count) = plan.open_handles.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                plan.open_handles.remove(&self.path);
            }
        }
    }
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        check_crashed(&lock_plan(&self.plan))?;
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        check_crashed(&lock_plan(&self.plan))?;
        self.inner.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let fault = {
            let mut plan = lock_plan(&self.plan);
            check_mutation(&mut plan)?;
            plan.writes += 1;
            match &plan.next_write {
                Some((suffix, _)) if path_matches(&self.path, suffix) => {
                    plan.injected += 1;
                    plan.next_write.take().map(|(_, f)| f)
                }
                _ => None,
            }
        };
        match fault {
            None => self.inner.write_at(buf, pos),
            Some(WriteFault::Fail) => Err(injected(EIO)),
            Some(WriteFault::Torn { prefix_bytes }) => {
                self.inner
                    .write_all_at(&buf[..prefix_bytes.min(buf.len())], pos)?;
                Err(injected(EIO))
            }
            Some(WriteFault::NoSpace { prefix_bytes }) => {
                self.inner
                    .write_all_at(&buf[..prefix_bytes.min(buf.len())], pos)?;
                Err(injected(ENOSPC))
            }
            Some(WriteFault::TornThenCrash { prefix_bytes }) => {
                self.inner
                    .write_all_at(&buf[..prefix_bytes.min(buf.len())], pos)?;
                lock_plan(&self.plan).crashed = true;
                Err(injected(EIO))
            }
            Some(WriteFault::Short { max_bytes }) => {
                let n = max_bytes.clamp(1, buf.len().max(1)).min(buf.len());
                self.inner.write_at(&buf[..n], pos)
            }
        }
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        check_mutation(&mut lock_plan(&self.plan))?;
        self.inner.set_len(len_bytes)
    }
    fn sync_data(&self) -> io::Result<()> {
        FaultyStorage::take_sync_fault(&self.plan, &self.path)?;
        self.inner.sync_data()
    }
    fn start_writeback(&self, pos: u64, len_bytes: u64) -> io::Result<()> {
        {
            let mut plan = lock_plan(&self.plan);
            check_crashed(&plan)?;
            if plan.writebacks.len() == WRITEBACKS_KEPT_MAX {
                plan.writebacks.pop_front();
            }
            plan.writebacks
                .push_back((self.path.clone(), pos, len_bytes));
            if std::mem::take(&mut plan.next_writeback_fails) {
                plan.injected += 1;
                return Err(injected(EIO));
            }
        }
        self.inner.start_writeback(pos, len_bytes)
    }
}

// ----- PowerLossStorage -----

/// A [`Storage`] that models the page cache, so a test can cut the power.
///
/// Every call goes to `inner` (its files are "the page cache": what a running process reads)
/// and is also recorded in a model of what the disk holds durably:
///
/// - **File content.** Per file (per inode: renames and extra handles share it), the content
///   as of its last successful [`StorageFile::sync_data`], plus the ordered list of the writes
///   and `set_len`s made since. `sync_data` folds that list into the durable content (the
///   whole file, whichever handle wrote, as `fdatasync` does).
/// - **Directory entries.** Per directory, the entries as of its last [`Storage::sync_dir`],
///   plus the ordered list of creations (a creating [`Storage::open`] of an absent file),
///   removals and renames since. `sync_dir` folds that list into the durable entries.
///
/// [`PowerLossStorage::power_loss`] then rewrites the inner files as a machine that lost
/// power would show them, chosen deterministically from a seed:
///
/// - each directory keeps its durable entries plus a prefix (possibly empty, possibly all)
///   of its un-synced entry operations: a created file may vanish, a removed one may come
///   back, a rename may be reverted (a rename is atomic: it happens wholly or not at all);
/// - each file that still has a name keeps its durable content plus a prefix of its
///   un-synced writes, the first write after that prefix possibly torn (any prefix of its
///   bytes, including none); a `set_len` after the prefix is lost whole.
///
/// Afterwards the model starts afresh (what is on disk now is all durable), and handles
/// opened before the power loss fail with `EIO`: the process that held them is gone.
///
/// What it does not model: reordering of writes within a file (only a prefix of the
/// post-sync writes survives, never a later write without an earlier one); a write landing
/// with garbage instead of its bytes (torn tails are prefixes of the real bytes); dependencies
/// between files (each file and directory loses its tail independently, so file A's unsynced
/// write may survive while file B's earlier one does not, which real file systems also
/// allow); the durability of directories themselves (`create_dir_all` and `remove_dir_all`
/// are durable at once, and a file removed by `remove_dir_all` never comes back); renames
/// across directories (modelled as a removal in one directory and a creation in the other,
/// each durable with its own directory's sync); files that were already on disk when the
/// model first sees them are taken as durable. `sync_data` and `sync_dir` are not passed on
/// to `inner`: durability is the model's business, and skipping real fsyncs keeps tests fast.
#[derive(Debug)]
pub struct PowerLossStorage {
    inner: Arc<dyn Storage>,
    machine: Arc<Mutex<Machine>>,
}

/// What one [`PowerLossStorage::power_loss`] undid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerLossOutcome {
    /// Un-synced directory operations (creations, removals, renames) that were undone.
    pub dir_ops_lost: usize,
    /// Un-synced writes and `set_len`s that were lost whole.
    pub file_ops_lost: usize,
    /// Writes that survived only partly (a torn tail).
    pub torn_writes: usize,
    /// Files that exist after the power loss.
    pub files: usize,
}

/// A change to a file's content.
#[derive(Debug, Clone)]
enum FileOp {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A change to a directory's entries.
#[derive(Debug, Clone)]
enum DirOp {
    Link { name: OsString, inode: u64 },
    Unlink { name: OsString },
    Rename { from: OsString, to: OsString },
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Default)]
struct DirState {
    durable: BTreeMap<OsString, u64>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Default)]
struct Machine {
    /// Bumped by every power loss; handles of an older generation fail.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    /// The live names (what `inner` holds) of the files the model knows.
    current: BTreeMap<PathBuf, u64>,
    dirs: BTreeMap<PathBuf, DirState>,
}

fn apply_write(content: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let pos = pos as usize;
    let end = pos + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[pos..end].copy_from_slice(bytes);
}

fn apply_file_op(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { pos, bytes } => apply_write(content, *pos, bytes),
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

fn apply_dir_op(entries: &mut BTreeMap<OsString, u64>, op: &DirOp) {
    match op {
        DirOp::Link { name, inode } => {
            entries.insert(name.clone(), *inode);
        }
        DirOp::Unlink { name } => {
            entries.remove(name);
        }
        DirOp::Rename { from, to } => {
            if let Some(inode) = entries.remove(from) {
                entries.insert(to.clone(), inode);
            }
        }
    }
}

/// SplitMix64: a tiny deterministic generator, so a seed names one power loss exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: usize) -> usize {
        (self.next() % (max as u64 + 1)) as usize
    }
}

fn split_path(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_os_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file in a directory", path.display()),
        )),
    }
}

fn lock_machine(machine: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    machine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PowerLossStorage {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(PowerLossStorage {
            inner,
            machine: Arc::new(Mutex::new(Machine::default())),
        })
    }

    /// The inode of `path`, registering a file the model has not seen yet (one that was on
    /// disk before: durable, content and name). `None` if there is no such file.
    fn track(&self, machine: &mut Machine, path: &Path) -> io::Result<Option<u64>> {
        if let Some(&inode) = machine.current.get(path) {
            return Ok(Some(inode));
        }
        let file = match self.inner.open(path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut content = vec![0u8; file.len()? as usize];
        file.read_exact_at(&mut content, 0)?;
        let (dir, name) = split_path(path)?;
        let inode = machine.next_inode;
        machine.next_inode += 1;
        machine.inodes.insert(
            inode,
            Inode {
                durable: content,
                pending: Vec::new(),
            },
        );
        machine.current.insert(path.to_path_buf(), inode);
        machine
            .dirs
            .entry(dir)
            .or_default()
            .durable
            .insert(name, inode);
        Ok(Some(inode))
    }

    /// Cuts the power: rewrites the inner files to what the disk would hold (see the type's
    /// docs), chosen deterministically from `seed`, and starts the model afresh. Handles opened
    /// before fail from now on.
    pub fn power_loss(&self, seed: u64) -> io::Result<PowerLossOutcome> {
        let mut machine = lock_machine(&self.machine);
        let mut rng = SplitMix64(seed);
        let mut outcome = PowerLossOutcome::default();

        // Which names survive, pointing at which files.
        let mut surviving: Vec<(PathBuf, u64)> = Vec::new();
        for (dir, state) in &machine.dirs {
            let keep = rng.up_to(state.pending.len());
            outcome.dir_ops_lost += state.pending.len() - keep;
            let mut entries = state.durable.clone();
            for op in &state.pending[..keep] {
                apply_dir_op(&mut entries, op);
            }
            surviving.extend(
                entries
                    .into_iter()
                    .map(|(name, inode)| (dir.join(name), inode)),
            );
        }

        // What each surviving file holds.
        let inodes: BTreeSet<u64> = surviving.iter().map(|&(_, inode)| inode).collect();
        let mut contents: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for inode in inodes {
            let state = &machine.inodes[&inode];
            let mut content = state.durable.clone();
            let keep = rng.up_to(state.pending.len());
            for op in &state.pending[..keep] {
                apply_file_op(&mut content, op);
            }
            outcome.file_ops_lost += state.pending.len() - keep;
            if let Some(FileOp::Write { pos, bytes }) = state.pending.get(keep) {
                let torn = rng.up_to(bytes.len());
                if torn > 0 {
                    apply_write(&mut content, *pos, &bytes[..torn]);
                    outcome.torn_writes += 1;
                }
            }
            contents.insert(inode, content);
        }

        // Make the inner files say so.
        for path in machine.current.keys() {
            match self.inner.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for (path, inode) in &surviving {
            if let Some(parent) = path.parent() {
                self.inner.create_dir_all(parent)?;
            }
            let file = self.inner.open(path, OpenMode::CreateOrOpen)?;
            file.set_len(0)?;
            file.write_all_at(&contents[inode], 0)?;
            file.sync_data()?;
        }
        for dir in machine.dirs.keys() {
            match self.inner.sync_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        outcome.files = surviving.len();

        let generation = machine.generation + 1;
        *machine = Machine {
            generation,
            next_inode: machine.next_inode,
            ..Machine::default()
        };
        Ok(outcome)
    }
}

impl Storage for PowerLossStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut machine = lock_machine(&self.machine);
        let existing = self.track(&mut machine, path)?;
        let file = self.inner.open(path, mode)?;
        let inode = match existing {
            Some(inode) => inode,
            None => {
                // Created by this open: the entry is durable only after a sync_dir.
                let (dir, name) = split_path(path)?;
                let inode = machine.next_inode;
                machine.next_inode += 1;
                machine.inodes.insert(inode, Inode::default());
                machine.current.insert(path.to_path_buf(), inode);
                machine
                    .dirs
                    .entry(dir)
                    .or_default()
                    .pending
                    .push(DirOp::Link { name, inode });
                inode
            }
        };
        Ok(Box::new(PowerLossFile {
            inner: file,
            inode,
            generation: machine.generation,
            machine: Arc::clone(&self.machine),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut machine = lock_machine(&self.machine);
        let tracked = self.track(&mut machine, path)?;
        self.inner.remove_file(path)?;
        if tracked.is_some() {
            machine.current.remove(path);
            let (dir, name) = split_path(path)?;
            machine
                .dirs
                .entry(dir)
                .or_default()
                .pending
                .push(DirOp::Unlink { name });
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut machine = lock_machine(&self.machine);
        let inode = self.track(&mut machine, from)?;
        self.track(&mut machine, to)?;
        self.inner.rename(from, to)?;
        let Some(inode) = inode else {
            return Ok(());
        };
        machine.current.remove(from);
        machine.current.insert(to.to_path_buf(), inode);
        let (from_dir, from_name) = split_path(from)?;
        let (to_dir, to_name) = split_path(to)?;
        if from_dir == to_dir {
            machine
                .dirs
                .entry(to_dir)
                .or_default()
                .pending
                .push(DirOp::Rename {
                    from: from_name,
                    to: to_name,
                });
        } else {
            machine
                .dirs
                .entry(from_dir)
                .or_default()
                .pending
                .push(DirOp::Unlink { name: from_name });
            machine
                .dirs
                .entry(to_dir)
                .or_default()
                .pending
                .push(DirOp::Link {
                    name: to_name,
                    inode,
                });
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut machine = lock_machine(&self.machine);
        self.inner.remove_dir_all(path)?;
        // Durable at once (see the type's docs): forget everything under `path`.
        machine.current.retain(|p, _| !p.starts_with(path));
        machine.dirs.retain(|d, _| !d.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut machine = lock_machine(&self.machine);
        // Fails as the real one would for a missing directory.
        self.inner.list_dir(path)?;
        if let Some(state) = machine.dirs.get_mut(path) {
            for op in std::mem::take(&mut state.pending) {
                apply_dir_op(&mut state.durable, &op);
            }
        }
        Ok(())
    }
}

/// A file of [`PowerLossStorage`].
#[derive(Debug)]
struct PowerLossFile {
    inner: Box<dyn StorageFile>,
    inode: u64,
    generation: u64,
    machine: Arc<Mutex<Machine>>,
}

impl PowerLossFile {
    /// The machine, if this handle was opened since the last power loss.
    fn machine(&self) -> io::Result<MutexGuard<'_, Machine>> {
        let machine = lock_machine(&self.machine);
        if machine.generation != self.generation {
            return Err(injected(EIO));
        }
        Ok(machine)
    }
}

impl StorageFile for PowerLossFile {
    fn len(&self) -> io::Result<u64> {
        let _machine = self.machine()?;
        self.inner.len()
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let _machine = self.machine()?;
        self.inner.read_at(buf, pos)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let mut machine = self.machine()?;
        let written = self.inner.write_at(buf, pos)?;
        if let Some(inode) = machine.inodes.get_mut(&self.inode) {
            inode.pending.push(FileOp::Write {
                pos,
                bytes: buf[..written.min(buf.len())].to_vec(),
            });
        }
        Ok(written)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let mut machine = self.machine()?;
        self.inner.set_len(len_bytes)?;
        if let Some(inode) = machine.inodes.get_mut(&self.inode) {
            inode.pending.push(FileOp::SetLen(len_bytes));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut machine = self.machine()?;
        if let Some(inode) = machine.inodes.get_mut(&self.inode) {
            for op in std::mem::take(&mut inode.pending) {
                apply_file_op(&mut inode.durable, &op);
            }
        }
        Ok(())
    }

    /// Makes nothing durable: a power loss after it still loses the pending writes.
    fn start_writeback(&self, pos: u64, len_bytes: u64) -> io::Result<()> {
        let _machine = self.machine()?;
        self.inner.start_writeback(pos, len_bytes)
    }
}

/// Checks that `storage` honours the [`Storage`] contract, using the (existing, empty or
/// absent) directory `root`. Panics with a description of the first violation.
pub fn storage_conformance(storage: &dyn Storage, root: &Path) {
    let dir = root.join("conformance");
    storage.create_dir_all(&dir).expect("create_dir_all");
    storage
        .create_dir_all(&dir)
        .expect("create_dir_all of an existing directory succeeds");
    assert!(
        storage.list_dir(&dir).expect("list_dir").is_empty(),
        "a new directory is empty"
    );

    // Open modes.
    let a = dir.join("a");
    let missing = storage.open(&a, OpenMode::ReadWrite);
    assert_eq!(
        missing.err().map(|e| e.kind()),
        Some(io::ErrorKind::NotFound),
        "ReadWrite of a missing file is NotFound"
    );
    let file = storage.open(&a, OpenMode::CreateNew).expect("CreateNew");
    assert_eq!(
        storage
            .open(&a, OpenMode::CreateNew)
            .err()
            .map(|e| e.kind()),
        Some(io::ErrorKind::AlreadyExists),
        "CreateNew of an existing file is AlreadyExists"
    );
    assert_eq!(file.len().unwrap(), 0, "a created file is empty");
    assert!(file.is_empty().unwrap());

    // Positional writes and reads.
    file.write_all_at(b"hello world", 0).expect("write_all_at");
    file.write_all_at(b"W", 6).expect("overwrite");
    assert_eq!(file.len().unwrap(), 11);
    let mut buf = [0u8; 11];
    file.read_exact_at(&mut buf, 0).expect("read_exact_at");
    assert_eq!(&buf, b"hello World");
    // Inside memory_only a read returns the bytes or WouldBlock, never anything else.
    let mut nowait = [0u8; 11];
    match crate::storage::memory_only(|| file.read_exact_at(&mut nowait, 0)) {
        Ok(()) => assert_eq!(&nowait, b"hello World", "a memory-only read"),
        Err(e) => assert!(
            crate::storage::is_would_block(&e),
            "a memory-only read fails only with WouldBlock: {e}"
        ),
    }
    let mut tail = [0u8; 8];
    let n = file.read_at(&mut tail, 6).expect("read_at near the end");
    assert!(
        n <= 5 && tail[..n] == b"World"[..n],
        "read_at returns a prefix"
    );
    assert_eq!(
        file.read_at(&mut tail, 11).unwrap(),
        0,
        "read_at at the end is 0"
    );
    assert_eq!(
        file.read_at(&mut tail, 100).unwrap(),
        0,
        "read_at past the end is 0"
    );
    assert_eq!(
        file.read_exact_at(&mut tail, 6).err().map(|e| e.kind()),
        Some(io::ErrorKind::UnexpectedEof),
        "read_exact_at past the end is UnexpectedEof"
    );
    let mut into = bytes::BytesMut::from(&b">"[..]);
    file.read_exact_into(&mut into, 5, 6)
        .expect("read_exact_into");
    assert_eq!(&into[..], b">World", "read_exact_into appends what it read");
    assert_eq!(
        file.read_exact_into(&mut into, 6, 6)
            .err()
            .map(|e| e.kind()),
        Some(io::ErrorKind::UnexpectedEof),
        "read_exact_into past the end is UnexpectedEof"
    );
    assert_eq!(
        &into[..],
        b">World",
        "a failed read_exact_into leaves the buffer as it was"
    );
    file.start_writeback(0, 11)
        .expect("start_writeback of written bytes");
    file.start_writeback(0, 1 << 20)
        .expect("start_writeback of a range past the end");
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"hello World",
        "start_writeback leaves the bytes as written"
    );
    file.write_all_at(b"!", 20).expect("write past the end");
    assert_eq!(file.len().unwrap(), 21, "writing past the end extends");
    let mut gap = [0xffu8; 9];
    file.read_exact_at(&mut gap, 11).unwrap();
    assert_eq!(gap, [0u8; 9], "a gap reads as zeros");

    // Length changes.
    file.set_len(5).expect("shrink");
    assert_eq!(file.len().unwrap(), 5);
    file.set_len(8).expect("extend");
    let mut ext = [0xffu8; 8];
    file.read_exact_at(&mut ext, 0).unwrap();
    assert_eq!(&ext, b"hello\0\0\0", "extending fills with zeros");
    file.sync_data().expect("sync_data");

    // A second handle sees the first one's writes.
    let again = storage.open(&a, OpenMode::ReadWrite).expect("reopen");
    let mut five = [0u8; 5];
    again.read_exact_at(&mut five, 0).unwrap();
    assert_eq!(&five, b"hello");
    let created = storage
        .open(&a, OpenMode::CreateOrOpen)
        .expect("CreateOrOpen existing");
    assert_eq!(created.len().unwrap(), 8, "CreateOrOpen keeps content");
    drop((again, created));

    // Directory operations.
    let b = dir.join("b");
    let fb = storage
        .open(&b, OpenMode::CreateOrOpen)
        .expect("CreateOrOpen new");
    fb.write_all_at(b"bee", 0).unwrap();
    fb.sync_data().unwrap();
    drop(fb);
    storage.sync_dir(&dir).expect("sync_dir");
    let mut names = storage.list_dir(&dir).unwrap();
    names.sort();
    assert_eq!(names, vec![OsString::from("a"), OsString::from("b")]);
    storage
        .rename(&b, &a)
        .expect("rename over an existing file");
    let mut three = [0u8; 3];
    storage
        .open(&a, OpenMode::ReadWrite)
        .unwrap()
        .read_exact_at(&mut three, 0)
        .unwrap();
    assert_eq!(&three, b"bee", "rename replaces the target");
    assert_eq!(storage.list_dir(&dir).unwrap(), vec![OsString::from("a")]);

    // An open handle survives removal of its file.
    file.write_all_at(b"still", 0)
        .expect("old handle still writable");
    storage.remove_file(&a).expect("remove_file");
    assert!(storage.list_dir(&dir).unwrap().is_empty());
    assert_eq!(
        storage.remove_file(&a).err().map(|e| e.kind()),
        Some(io::ErrorKind::NotFound),
        "removing a missing file is NotFound"
    );
    storage.sync_dir(&dir).expect("sync_dir after removal");

    // remove_dir_all.
    let nested = dir.join("x").join("y");
    storage.create_dir_all(&nested).unwrap();
    storage
        .open(&nested.join("f"), OpenMode::CreateNew)
        .unwrap();
    storage
        .remove_dir_all(&dir.join("x"))
        .expect("remove_dir_all");
    assert_eq!(
        storage.list_dir(&nested).err().map(|e| e.kind()),
        Some(io::ErrorKind::NotFound),
        "listing a removed directory is NotFound"
    );
    storage.remove_dir_all(&dir).unwrap();
}

/// Batch header offsets the helpers below rewrite (see `runnel_model::batch`).
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
/// Attribute bit of a transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit of a control batch.
pub const ATTR_CONTROL: i16 = 0x20;

/// Whether the file system under `dir` drops clean pages on `POSIX_FADV_DONTNEED` and answers
/// `RWF_NOWAIT` reads (ext4, xfs, btrfs: the disks we test on), so that a test can force a
/// read from the disk. tmpfs keeps every page in memory, and overlay file systems may not
/// tell: there a test checks only what holds everywhere (and says so on stderr).
pub fn evicts_and_tells(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid path and a zeroed statfs for the call to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683E;
    let strong = matches!(st.f_type as u64 & 0xFFFF_FFFF, EXT4 | XFS | BTRFS);
    if !strong {
        eprintln!(
            "note: {} keeps pages in memory or cannot tell; reads from the disk are not forced",
            dir.display()
        );
    }
    strong
}

/// Writes `path`'s pages to the disk and drops them from the page cache
/// (`POSIX_FADV_DONTNEED`), so that the next read of it waits for the disk.
pub fn evict_from_page_cache(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    f.sync_all()?;
    // SAFETY: an advice call on a descriptor we hold open.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Recomputes the CRC-32C of the single batch `batch` (bytes 21.. stored at 17..21).
pub fn recompute_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[OFF_ATTRIBUTES..]);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the producer id, epoch and base sequence of the single batch `batch`, and its CRC.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2]
        .copy_from_slice(&producer_epoch.to_be_bytes());
    batch[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    recompute_crc(batch);
}

/// Sets (`on`) or clears the attribute `bits` ([`ATTR_TRANSACTIONAL`], [`ATTR_CONTROL`]) of the
/// single batch `batch`, and its CRC.
pub fn set_attribute_bits(batch: &mut [u8], bits: i16, on: bool) {
    let at = OFF_ATTRIBUTES;
    let mut attributes = i16::from_be_bytes([batch[at], batch[at + 1]]);
    if on {
        attributes |= bits;
    } else {
        attributes &= !bits;
    }
    batch[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
    recompute_crc(batch);
}

/// Overwrites the last offset delta of the single batch `batch` (not its record count), and
/// its CRC: a batch that spans `delta + 1` offsets and sequences without holding that many
/// records, for tests that need huge sequence ranges. The log accepts it (it trusts the
/// caller's validation of record counts); a producer would never send it.
pub fn set_last_offset_delta(batch: &mut [u8], delta: i32) {
    batch[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&delta.to_be_bytes());
    recompute_crc(batch);
}

/// A valid batch of `records` small records from producer `producer_id` at `producer_epoch`,
/// starting at `base_sequence`, timestamped `timestamp_ms`.
pub fn producer_batch(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: usize,
    timestamp_ms: i64,
) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| {
            format!(
                "p{producer_id}e{producer_epoch}s{}",
                i64::from(base_sequence) + i as i64
            )
            .into_bytes()
        })
        .collect();
    let kvs: Vec<runnel_model::batch::testing::KeyValue<'_>> =
        values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let mut batch = runnel_model::batch::testing::build_batch(0, timestamp_ms, &kvs);
    set_producer(&mut batch, producer_id, producer_epoch, base_sequence);
    batch
}

/// A valid batch of records with the given keys and values (`None`: null), all timestamped
/// `timestamp_ms`, with offsets 0.. (the log assigns real ones) and no producer, encoded and
/// compressed by `kafka-protocol`.
pub fn keyed_batch(
    records: &[runnel_model::batch::testing::KeyValue<'_>],
    timestamp_ms: i64,
    compression: kafka_protocol::records::Compression,
) -> Vec<u8> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // With no producer the base sequence is -1; the encoder wants each record's
            // sequence to follow its offset.
            sequence: -1 + i as i32,
            timestamp: timestamp_ms,
            key: key.map(bytes::Bytes::copy_from_slice),
            value: value.map(bytes::Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encodable records");
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_model::batch::{validate_record_set, BatchView};

    #[test]
    fn given_producer_batch_should_be_valid_and_carry_the_fields() {
        let mut b = producer_batch(42, 3, 7, 4, 1_000);
        validate_record_set(&b).unwrap();
        let v = BatchView::parse(&b).unwrap();
        assert_eq!(
            (v.producer_id(), v.producer_epoch(), v.base_sequence()),
            (42, 3, 7)
        );
        set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
        let v = BatchView::parse(&b).unwrap();
        assert!(v.is_transactional() && !v.is_control());
        v.verify_crc().unwrap();
        set_last_offset_delta(&mut b, 100);
        let v = BatchView::parse(&b).unwrap();
        assert_eq!(v.last_offset_delta(), 100);
        v.verify_crc().unwrap();
    }

    #[test]
    fn given_keyed_batch_should_be_one_valid_batch_without_producer() {
        for compression in [
            kafka_protocol::records::Compression::None,
            kafka_protocol::records::Compression::Zstd,
        ] {
            let b = keyed_batch(
                &[
                    (Some(b"k"), Some(b"v")),
                    (Some(b"k2"), None),
                    (None, Some(b"x")),
                ],
                1_000,
                compression,
            );
            let summary = validate_record_set(&b).unwrap();
            assert_eq!((summary.batch_count, summary.offset_count), (1, 3));
            let v = BatchView::parse(&b).unwrap();
            assert_eq!(
                (v.producer_id(), v.base_sequence(), v.max_timestamp()),
                (-1, -1, 1_000)
            );
        }
    }
}

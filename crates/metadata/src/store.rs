//! The metadata log on disk and `meta.properties`: the only I/O in this crate.
//!
//! Layout under the broker's data directory (the first `log.dirs` entry):
//!
//! ```text
//! {data_dir}/meta.properties                     cluster.id, directory.id, node.id, version=1
//! {data_dir}/__cluster_metadata-0/metadata.log   frames, appended and fsync'd
//! ```
//!
//! A frame is `[u32 length][u32 crc32c][payload]` (big-endian; the CRC covers the payload),
//! and its payload is one batch of records as a JSON array ([`MetadataRecord::encode_batch`]).
//! Records appended together share one frame, so a batch is durable entirely or not at all.
//!
//! Replay stops at the first bad frame. A bad frame at the tail (cut short by a crash, a CRC
//! mismatch in the last frame, or zero-filled space) is dropped with a warning and the file is
//! truncated there. A bad frame followed by more data is corruption in the middle of the log:
//! `open` refuses to start rather than silently drop the records after it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use uuid::Uuid;

use crate::image::{ApplyError, MetadataImage};
use crate::records::MetadataRecord;

/// The metadata log's directory under the data directory, named like Kafka's.
pub const METADATA_DIR_NAME: &str = "__cluster_metadata-0";
/// The metadata log file inside [`METADATA_DIR_NAME`].
pub const METADATA_LOG_FILE_NAME: &str = "metadata.log";
/// Kafka's broker identity file in the data directory.
pub const META_PROPERTIES_FILE_NAME: &str = "meta.properties";
/// Frame header: payload length and CRC-32C, both `u32` big-endian.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest frame payload written or accepted on replay.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Failures of the metadata store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "Stored node id {stored} doesn't match previous node id {configured} in {path}. If you \
         moved your data, make sure your configured node id matches. If you intend to create a \
         new node, you should remove all data in your data directories."
    )]
    NodeIdMismatch {
        path: PathBuf,
        stored: i32,
        configured: i32,
    },
    #[error("{path}: {reason}")]
    BadMetaProperties { path: PathBuf, reason: String },
    #[error(
        "{path}: corrupt frame at byte {offset} ({reason}) is followed by {trailing_bytes} more \
         bytes; refusing to drop the records after it"
    )]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        reason: String,
        trailing_bytes: u64,
    },
    #[error("{path}: frame at byte {offset} does not decode: {reason}")]
    Undecodable {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: frame at byte {offset}, record {index}, does not apply: {source}")]
    Replay {
        path: PathBuf,
        offset: u64,
        index: usize,
        source: ApplyError,
    },
    #[error("record {index} of the batch was rejected: {source}")]
    Rejected { index: usize, source: ApplyError },
    #[error("the batch encodes to {bytes} bytes; the limit is {MAX_FRAME_PAYLOAD_BYTES}")]
    BatchTooLarge { bytes: usize },
    #[error("encoding the batch: {0}")]
    Encode(String),
    #[error(
        "the metadata log {path} could not be restored after a failed write; restart the broker"
    )]
    Failed { path: PathBuf },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The contents of `meta.properties` (KRaft version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    /// This directory's id (Kafka 3.7+ writes one); absent in older files.
    pub directory_id: Option<String>,
}

impl MetaProperties {
    /// Reads `{data_dir}/meta.properties` and checks it belongs to `node_id`, or creates it
    /// with a new random cluster id when the file does not exist.
    pub fn load_or_create(data_dir: &Path, node_id: i32) -> Result<MetaProperties, StoreError> {
        let path = data_dir.join(META_PROPERTIES_FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let props = MetaProperties::parse(&text).map_err(|reason| {
                    StoreError::BadMetaProperties {
                        path: path.clone(),
                        reason,
                    }
                })?;
                if props.node_id != node_id {
                    return Err(StoreError::NodeIdMismatch {
                        path,
                        stored: props.node_id,
                        configured: node_id,
                    });
                }
                Ok(props)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(data_dir).map_err(io("create directory", data_dir))?;
                let props = MetaProperties {
                    cluster_id: random_kafka_uuid(),
                    node_id,
                    directory_id: Some(random_kafka_uuid()),
                };
                write_durably(&path, props.render().as_bytes())?;
                tracing::info!(path = %path.display(), cluster_id = %props.cluster_id, "created meta.properties");
                Ok(props)
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Parses the text of a `meta.properties` file.
    pub fn parse(text: &str) -> Result<MetaProperties, String> {
        let mut version = None;
        let mut cluster_id = None;
        let mut node_id = None;
        let mut directory_id = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line '{line}' is not key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "version" => version = Some(value.to_owned()),
                "cluster.id" => cluster_id = Some(value.to_owned()),
                "node.id" => {
                    node_id = Some(
                        value
                            .parse::<i32>()
                            .map_err(|_| format!("node.id '{value}' is not an integer"))?,
                    )
                }
                "directory.id" => directory_id = Some(value.to_owned()),
                _ => {}
            }
        }
        match version.as_deref() {
            Some("1") => {}
            Some("0") => {
                return Err(
                    "version=0 is a ZooKeeper-mode meta.properties; Runnel needs version=1".into(),
                )
            }
            Some(v) => return Err(format!("unsupported meta.properties version '{v}'")),
            None => return Err("no version".into()),
        }
        let cluster_id = cluster_id
            .filter(|c| !c.is_empty())
            .ok_or("no cluster.id")?;
        let node_id = node_id.ok_or("no node.id")?;
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id,
        })
    }

    /// The file text, in Kafka's key names.
    pub fn render(&self) -> String {
        let mut text = String::from("#\n#Written by Runnel\n");
        text.push_str(&format!("cluster.id={}\n", self.cluster_id));
        if let Some(dir) = &self.directory_id {
            text.push_str(&format!("directory.id={dir}\n"));
        }
        text.push_str(&format!("node.id={}\nversion=1\n", self.node_id));
        text
    }
}

/// A UUID in Kafka's text form: 22 characters of URL-safe base64 without padding.
pub fn kafka_uuid_string(id: &Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// A random id as Kafka's `Uuid.randomUuid()` makes one: never nil, never the metadata
/// topic's id (1), and never starting with '-' (its text would look like a CLI flag).
pub fn random_kafka_uuid() -> String {
    loop {
        let id = Uuid::new_v4();
        let text = kafka_uuid_string(&id);
        if id.as_u128() > 1 && !text.starts_with('-') {
            return text;
        }
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// What [`scan_frames`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameScan {
    /// `(byte offset, payload range)` of each good frame, in order.
    pub frames: Vec<(u64, std::ops::Range<usize>)>,
    /// Length of the valid prefix: where the next frame goes.
    pub valid_len: u64,
    /// Why the bytes after `valid_len` were dropped, if any were.
    pub dropped_tail: Option<String>,
}

/// Finds the frames in a metadata log's bytes. Pure: decides what replay keeps, drops (a bad
/// tail) or refuses (a bad frame with data after it, reported as `Err((offset, reason))`).
pub fn scan_frames(bytes: &[u8]) -> Result<FrameScan, (u64, String)> {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let tail = |pos: usize, reason: String, frames| {
        Ok(FrameScan {
            frames,
            valid_len: pos as u64,
            dropped_tail: Some(reason),
        })
    };
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < FRAME_HEADER_BYTES {
            return tail(
                pos,
                format!(
                    "torn frame header ({} of {FRAME_HEADER_BYTES} bytes)",
                    rest.len()
                ),
                frames,
            );
        }
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if length == 0 || length > MAX_FRAME_PAYLOAD_BYTES {
            let reason = format!("impossible frame length {length}");
            if rest.iter().all(|b| *b == 0) {
                return tail(pos, format!("{reason} in zero-filled tail"), frames);
            }
            return Err((pos as u64, reason));
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length) else {
            return tail(
                pos,
                format!(
                    "torn frame: {length} payload bytes announced, {} present",
                    rest.len() - FRAME_HEADER_BYTES
                ),
                frames,
            );
        };
        let actual = crc32c::crc32c(payload);
        if actual != crc {
            let reason = format!("CRC mismatch: stored {crc:#010x}, computed {actual:#010x}");
            let end = pos + FRAME_HEADER_BYTES + length;
            if end == bytes.len() {
                return tail(pos, reason, frames);
            }
            return Err((pos as u64, reason));
        }
        let start = pos + FRAME_HEADER_BYTES;
        frames.push((pos as u64, start..start + length));
        pos = start + length;
    }
    Ok(FrameScan {
        frames,
        valid_len: pos as u64,
        dropped_tail: None,
    })
}

/// Encodes one frame for `records`.
pub fn encode_frame(records: &[MetadataRecord]) -> Result<Vec<u8>, StoreError> {
    let payload =
        MetadataRecord::encode_batch(records).map_err(|e| StoreError::Encode(e.to_string()))?;
    if payload.len() > MAX_FRAME_PAYLOAD_BYTES {
        return Err(StoreError::BatchTooLarge {
            bytes: payload.len(),
        });
    }
    let length = u32::try_from(payload.len()).map_err(|_| StoreError::BatchTooLarge {
        bytes: payload.len(),
    })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The append-only metadata log file.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    len: u64,
    failed: bool,
}

impl MetadataLog {
    /// Opens (creating if needed) the metadata log of `data_dir`, replays it into an image
    /// and truncates a bad tail frame. `{data_dir}/meta.properties` must exist (call
    /// [`MetaProperties::load_or_create`] first, which also checks the node id); the image
    /// takes its cluster id from it.
    pub fn open(data_dir: &Path) -> Result<(MetadataLog, MetadataImage), StoreError> {
        let meta_path = data_dir.join(META_PROPERTIES_FILE_NAME);
        let meta_text = fs::read_to_string(&meta_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::BadMetaProperties {
                    path: meta_path.clone(),
                    reason: "missing; MetaProperties::load_or_create creates it".into(),
                }
            } else {
                io("read", &meta_path)(e)
            }
        })?;
        let meta =
            MetaProperties::parse(&meta_text).map_err(|reason| StoreError::BadMetaProperties {
                path: meta_path.clone(),
                reason,
            })?;
        let dir = data_dir.join(METADATA_DIR_NAME);
        let created_dir = !dir.exists();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let path = dir.join(METADATA_LOG_FILE_NAME);
        let created_file = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        if created_file {
            file.sync_all().map_err(io("fsync", &path))?;
            sync_dir(&dir)?;
        }
        if created_dir {
            sync_dir(data_dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read", &path))?;

        let scan = scan_frames(&bytes).map_err(|(offset, reason)| StoreError::CorruptLog {
            path: path.clone(),
            offset,
            reason,
            trailing_bytes: bytes.len() as u64 - offset,
        })?;
        let mut image = MetadataImage::new(meta.cluster_id);
        for (offset, range) in &scan.frames {
            let payload = bytes.get(range.clone()).unwrap_or_default();
            let records =
                MetadataRecord::decode_batch(payload).map_err(|e| StoreError::Undecodable {
                    path: path.clone(),
                    offset: *offset,
                    reason: e.to_string(),
                })?;
            image
                .apply_all(&records)
                .map_err(|(index, source)| StoreError::Replay {
                    path: path.clone(),
                    offset: *offset,
                    index,
                    source,
                })?;
        }
        if let Some(reason) = &scan.dropped_tail {
            tracing::warn!(
                path = %path.display(),
                offset = scan.valid_len,
                dropped_bytes = bytes.len() as u64 - scan.valid_len,
                reason = %reason,
                "dropping the bad tail frame of the metadata log"
            );
            file.set_len(scan.valid_len)
                .map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
        }
        tracing::info!(
            path = %path.display(),
            frames = scan.frames.len(),
            topics = image.topic_count(),
            "replayed the metadata log"
        );
        Ok((
            MetadataLog {
                path,
                file,
                len: scan.valid_len,
                failed: false,
            },
            image,
        ))
    }

    /// Appends `records` as one frame and fsyncs before returning. An empty batch writes
    /// nothing. After a failed write the file is truncated back; if even that fails, every
    /// later append fails too.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Failed {
                path: self.path.clone(),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        let frame = encode_frame(records)?;
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&frame))
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            let restored = self
                .file
                .set_len(self.len)
                .and_then(|_| self.file.sync_all());
            if restored.is_err() {
                self.failed = true;
            }
            return Err(io("append to", &self.path)(e));
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Checks `records` against `image`, appends them durably, and returns the new image.
    /// Nothing is written when a record does not apply.
    pub fn commit(
        &mut self,
        image: &MetadataImage,
        records: &[MetadataRecord],
    ) -> Result<MetadataImage, StoreError> {
        let mut next = image.clone();
        next.apply_all(records)
            .map_err(|(index, source)| StoreError::Rejected { index, source })?;
        self.append(records)?;
        Ok(next)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of valid frames in the file.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ConfigResource;

    fn topic(name: &str, n: u128) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_u128(n),
        }
    }

    /// meta.properties for node 1, then the log.
    fn open(dir: &Path) -> Result<(MetadataLog, MetadataImage), StoreError> {
        MetaProperties::load_or_create(dir, 1)?;
        MetadataLog::open(dir)
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(METADATA_DIR_NAME).join(METADATA_LOG_FILE_NAME)
    }

    #[test]
    fn given_appended_batches_when_reopened_should_replay_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, image) = open(dir.path()).unwrap();
        assert_eq!(image.topic_count(), 0);
        let cluster_id = image.cluster_id().to_owned();
        assert_eq!(cluster_id.len(), 22);
        let image = log.commit(&image, &[topic("a", 1), topic("b", 2)]).unwrap();
        let image = log
            .commit(
                &image,
                &[MetadataRecord::Config {
                    resource: ConfigResource::topic("a"),
                    name: "retention.ms".into(),
                    value: Some("5".into()),
                }],
            )
            .unwrap();
        log.append(&[]).unwrap();
        drop(log);
        let (log, replayed) = open(dir.path()).unwrap();
        assert_eq!(replayed, image);
        assert_eq!(replayed.cluster_id(), cluster_id);
        assert_eq!(log.len_bytes(), fs::metadata(log.path()).unwrap().len());
    }

    #[test]
    fn given_a_rejected_batch_when_committed_should_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, image) = open(dir.path()).unwrap();
        let err = log
            .commit(
                &image,
                &[
                    topic("a", 1),
                    MetadataRecord::RemoveTopic {
                        topic_id: Uuid::from_u128(9),
                    },
                ],
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Rejected { index: 1, .. }),
            "{err}"
        );
        assert_eq!(log.len_bytes(), 0);
    }

    fn write_two_batches(dir: &Path) -> (u64, MetadataImage) {
        let (mut log, image) = open(dir).unwrap();
        let image = log.commit(&image, &[topic("a", 1)]).unwrap();
        let first_len = log.len_bytes();
        log.commit(&image, &[topic("b", 2), topic("c", 3)]).unwrap();
        (first_len, image)
    }

    #[test]
    fn given_a_torn_tail_frame_when_reopened_should_drop_only_it_and_truncate() {
        // Keep the first frame plus part of the second: inside its header, just the header,
        // the header and one byte, or all but its last byte.
        for extra in [3u64, 8, 9, u64::MAX] {
            let dir = tempfile::tempdir().unwrap();
            let (first_len, after_first) = write_two_batches(dir.path());
            let path = log_path(dir.path());
            let full = fs::metadata(&path).unwrap().len();
            let keep = first_len.saturating_add(extra).min(full - 1);
            let cut = full - keep;
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(keep).unwrap();
            drop(file);
            let (mut log, image) = open(dir.path()).unwrap();
            assert_eq!(image, after_first, "cut {cut}");
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                first_len,
                "file truncated (cut {cut})"
            );
            // Appending after recovery works and survives another reopen.
            log.commit(&image, &[topic("d", 4)]).unwrap();
            drop(log);
            let (_, image) = open(dir.path()).unwrap();
            assert!(image.topic_by_name("d").is_some());
            assert!(image.topic_by_name("b").is_none());
        }
    }

    #[test]
    fn given_a_corrupt_tail_frame_when_reopened_should_drop_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let (first_len, after_first) = write_two_batches(dir.path());
        let path = log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (_, image) = open(dir.path()).unwrap();
        assert_eq!(image, after_first);
        assert_eq!(fs::metadata(&path).unwrap().len(), first_len);
    }

    #[test]
    fn given_a_zero_filled_tail_when_reopened_should_drop_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _) = write_two_batches(dir.path());
        let path = log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]);
        fs::write(&path, &bytes).unwrap();
        let (_, image) = open(dir.path()).unwrap();
        assert_eq!(image.topic_count(), 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), valid);
    }

    #[test]
    fn given_corruption_before_valid_frames_when_reopened_should_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let (first_len, _) = write_two_batches(dir.path());
        let path = log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let inside_first = (first_len - 1) as usize;
        bytes[inside_first] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptLog { offset: 0, .. }),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing truncated");
    }

    #[test]
    fn given_a_frame_with_good_crc_but_bad_json_should_refuse() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        let payload = b"not json";
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        frame.extend_from_slice(payload);
        fs::write(log_path(dir.path()), &frame).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Undecodable { .. }), "{err}");
    }

    #[test]
    fn given_arbitrary_bytes_when_scanned_should_not_panic() {
        let mut state = 0x1234_5678u32;
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state & 0xff) as u8
                })
                .collect();
            let _ = scan_frames(&bytes);
        }
    }

    #[test]
    fn given_an_existing_meta_properties_with_another_node_id_should_fail_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        let err = MetaProperties::load_or_create(dir.path(), 2).unwrap_err();
        let message = err.to_string();
        assert!(matches!(
            err,
            StoreError::NodeIdMismatch {
                stored: 1,
                configured: 2,
                ..
            }
        ));
        assert!(
            message.contains("Stored node id 1") && message.contains("previous node id 2"),
            "{message}"
        );
    }

    #[test]
    fn given_no_meta_properties_when_opening_the_log_should_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = MetadataLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("meta.properties"), "{err}");
    }

    #[test]
    fn given_meta_properties_texts_when_parsed_should_accept_kafka_files_and_reject_bad_ones() {
        let kafka = "#\n#Tue Jan 02 10:00:00 UTC 2024\ncluster.id=MkU3OEVBNTcwNTJENDM2Qg\n\
                     directory.id=J8aAPcfLQt2bqs1JT_rMgQ\nnode.id=1\nversion=1\n";
        let props = MetaProperties::parse(kafka).unwrap();
        assert_eq!(props.cluster_id, "MkU3OEVBNTcwNTJENDM2Qg");
        assert_eq!(props.node_id, 1);
        assert_eq!(MetaProperties::parse(&props.render()).unwrap(), props);
        for (text, reason) in [
            ("cluster.id=x\nnode.id=1\n", "no version"),
            ("version=0\ncluster.id=x\nbroker.id=1\n", "ZooKeeper"),
            ("version=1\nnode.id=1\n", "no cluster.id"),
            ("version=1\ncluster.id=x\n", "no node.id"),
            ("version=1\ncluster.id=x\nnode.id=one\n", "not an integer"),
        ] {
            let err = MetaProperties::parse(text).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn given_uuids_when_printed_kafka_style_should_be_22_base64url_chars() {
        assert_eq!(kafka_uuid_string(&Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            kafka_uuid_string(&Uuid::from_u128(1)),
            "AAAAAAAAAAAAAAAAAAAAAQ"
        );
        assert_eq!(
            kafka_uuid_string(&Uuid::from_u128(u128::MAX)),
            "_____________________w"
        );
        for _ in 0..100 {
            let id = random_kafka_uuid();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        }
    }
}

//! Writes the partition directory a `segment_recovery` or `index_files` input describes, to
//! look at a finding with ordinary tools:
//!
//! ```sh
//! cd fuzz && cargo run --example materialize -- segment_recovery <input> <empty dir>
//! ```
//!
//! Prints the parsed input and the files written.

use std::path::Path;

use runnel_fuzz::{DirSpec, IndexSpec, IndexTemplate};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, input, dir] = args.as_slice() else {
        eprintln!("usage: materialize <segment_recovery|index_files> <input> <dir>");
        std::process::exit(2);
    };
    let data = std::fs::read(input).expect("read input");
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).expect("create dir");
    match target.as_str() {
        "segment_recovery" => {
            let spec = DirSpec::parse(&data);
            let len = |b: &Option<Vec<u8>>| b.as_ref().map(Vec::len);
            println!(
                "clean_shutdown {} interval {} small_segments {} log_append_time {}\n\
                 index {:?} timeindex {:?} log-start {:?} epochs {:?} snapshot {:?}\n\
                 log {} bytes, second segment {:?}",
                spec.clean_shutdown,
                spec.index_interval_bytes(),
                spec.small_segments,
                spec.log_append_time,
                len(&spec.index),
                len(&spec.time_index),
                spec.log_start_checkpoint
                    .as_deref()
                    .map(String::from_utf8_lossy),
                spec.epoch_checkpoint
                    .as_deref()
                    .map(String::from_utf8_lossy),
                spec.snapshot.as_ref().map(|(o, b)| (o, b.len())),
                spec.log.len(),
                spec.second.as_ref().map(|(base, b)| (base, b.len())),
            );
            spec.write_to(dir);
        }
        "index_files" => {
            let spec = IndexSpec::parse(&data);
            println!("{spec:?}");
            let tmp = dir.join(".template");
            std::fs::create_dir_all(&tmp).unwrap();
            let t = IndexTemplate::build(spec.two_segments, &tmp);
            std::fs::remove_dir_all(&tmp).unwrap();
            let first = runnel_fuzz::stem(t.segments[0]);
            for (name, bytes) in &t.files {
                let replaced = match name.strip_prefix(&first) {
                    Some(".index") => Some(&spec.index),
                    Some(".timeindex") => Some(&spec.time_index),
                    _ => None,
                };
                match replaced {
                    Some(Some(b)) => std::fs::write(dir.join(name), b).unwrap(),
                    Some(None) => {}
                    None => std::fs::write(dir.join(name), bytes).unwrap(),
                }
            }
            if spec.clean_shutdown {
                std::fs::write(dir.join("clean-shutdown"), b"").unwrap();
            }
            println!("template batches (base..next, max ts, position):");
            let mut pos = 0;
            let mut seg = 0;
            for b in &t.batches {
                if seg + 1 < t.segments.len() && b.base_offset >= t.segments[seg + 1] {
                    seg += 1;
                    pos = 0;
                }
                println!(
                    "  {}..{} ts {} @{pos}",
                    b.base_offset, b.next_offset, b.max_timestamp
                );
                pos += b.bytes.len();
            }
        }
        other => panic!("unknown target {other}"),
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        println!("{:>8} {}", len, e.file_name().to_string_lossy());
    }
}

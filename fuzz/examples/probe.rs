//! Opens a partition directory (as `segment_recovery` does, default config unless told) and
//! prints what the log reports and serves. For looking at findings:
//!
//! ```sh
//! cd fuzz && cargo run --example probe -- <dir> [index_interval_bytes] [segment_bytes] [cycle]
//! ```
//!
//! With `cycle`, then appends a batch of 3 records, closes, reopens and reads again, as
//! `segment_recovery` does.

use std::path::Path;
use std::sync::Arc;

use runnel_log::{FsStorage, LogConfig, PartitionLog, Storage};
use runnel_model::batch::Batches;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let log = open_and_read(&args);
    if args.get(4).map(String::as_str) == Some("cycle") {
        let epoch = log.leader_epochs().last().map_or(0, |&(e, _)| e).max(0);
        let mut batch = runnel_model::batch::testing::simple_batch(0, 3);
        println!(
            "append: {:?}",
            log.append(&mut batch, epoch, runnel_fuzz::NOW_MS)
        );
        println!("close: {:?}", log.close());
        drop(log);
        println!("-- reopened");
        open_and_read(&args);
    }
}

fn open_and_read(args: &[String]) -> PartitionLog {
    let dir = Path::new(&args[1]);
    let mut config = LogConfig::default();
    if let Some(v) = args.get(2) {
        config.index_interval_bytes = v.parse().unwrap();
    }
    if let Some(v) = args.get(3) {
        config.segment_bytes = v.parse().unwrap();
    }
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
    let log = PartitionLog::open(storage, dir, config, runnel_fuzz::NOW_MS).expect("open");
    println!("{log:?}");
    println!("segments {:?}", log.segment_base_offsets());
    println!("epochs {:?}", log.leader_epochs());
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut offset = start;
    while offset < end {
        let r = log.read(offset, 16 * 1024, i64::MAX, true);
        match r {
            Ok(r) => {
                println!(
                    "read {offset}: {} batches, next {}",
                    r.batch_count, r.next_offset
                );
                for v in Batches::new(&r.bytes) {
                    let v = v.unwrap();
                    println!(
                        "   batch {}..={} {} bytes",
                        v.base_offset(),
                        v.last_offset(),
                        v.size_bytes()
                    );
                }
                if r.next_offset <= offset {
                    println!("no progress");
                    break;
                }
                offset = r.next_offset;
            }
            Err(e) => {
                println!("read {offset}: {e}");
                break;
            }
        }
    }
    log
}

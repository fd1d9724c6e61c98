//! `runnel consume TOPIC`: print records, plain values or JSON lines.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use serde_json::json;

use crate::client::{
    code_sentence, error_code, kafka_error, list_offsets, stop_flag, topic_partitions, watermarks,
    CliError, CliResult, ConnArgs, Format, Quiet,
};
use crate::timefmt;

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic to read.
    topic: String,
    /// Start at the first record (with --group: when the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset in every partition read (clamped to the log).
    #[arg(long, value_name = "N", conflicts_with_all = ["from_time", "group"])]
    offset: Option<i64>,
    /// Start at the first record at or after this time: epoch ms, -DURATION (e.g. -15m),
    /// RFC 3339 or a local date and time.
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        conflicts_with = "group"
    )]
    from_time: Option<String>,
    /// Consume as a member of this consumer group, committing offsets. Without it the
    /// partitions are read directly and nothing is committed.
    #[arg(short = 'g', long, value_name = "GROUP")]
    group: Option<String>,
    /// Stop after this many records (default: follow until Ctrl-C).
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// Read only these partitions (comma-separated or repeated).
    #[arg(
        short = 'p',
        long = "partition",
        value_delimiter = ',',
        conflicts_with = "group"
    )]
    partitions: Vec<i32>,
    /// Stop at the end of every partition read instead of waiting for more records.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
}

pub fn run(args: ConsumeArgs) -> CliResult<()> {
    let conn = &args.conn;
    let topic = args.topic.as_str();
    if args.count == Some(0) {
        return Ok(());
    }
    if let Some(o) = args.offset {
        if o < 0 {
            return Err(CliError::usage("--offset must be 0 or more"));
        }
    }
    let from_time = match &args.from_time {
        Some(t) => Some(timefmt::parse_time_ms(t, timefmt::now_ms()).map_err(CliError::usage)?),
        None => None,
    };
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let eof = if args.exit_at_end { "true" } else { "false" };
    let consumer = match &args.group {
        Some(g) => conn.consumer(
            Some(g),
            &[
                ("auto.offset.reset", reset),
                ("enable.auto.commit", "true"),
                // Offsets are stored once a record is printed, then committed.
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", eof),
            ],
        )?,
        None => conn.consumer(
            None,
            &[("auto.offset.reset", reset), ("enable.partition.eof", eof)],
        )?,
    };
    let md = conn.metadata(consumer.client(), Some(topic))?;
    let all = topic_partitions(&md, topic)?;
    if let Some(g) = &args.group {
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_error(&format!("cannot join group '{g}'"), &e))?;
    } else {
        let chosen: Vec<i32> = if args.partitions.is_empty() {
            all.clone()
        } else {
            for p in &args.partitions {
                if !all.contains(p) {
                    return Err(CliError::new(format!(
                        "topic '{topic}' has no partition {p} (UNKNOWN_TOPIC_OR_PARTITION)"
                    )));
                }
            }
            args.partitions.clone()
        };
        let tps: Vec<(String, i32)> = chosen.iter().map(|p| (topic.to_string(), *p)).collect();
        let starts: Vec<Offset> = if args.from_beginning {
            vec![Offset::Beginning; tps.len()]
        } else if let Some(n) = args.offset {
            let marks = watermarks(&consumer, &tps, conn.timeout)?;
            tps.iter()
                .map(|tp| {
                    let (s, e) = marks[tp];
                    Offset::Offset(n.clamp(s, e))
                })
                .collect()
        } else if let Some(ms) = from_time {
            let found = list_offsets(&consumer, &tps, Offset::Offset(ms), conn.timeout)?;
            tps.iter()
                .map(|tp| match found.get(tp).copied().flatten() {
                    Some(o) => Offset::Offset(o),
                    None => Offset::End,
                })
                .collect()
        } else {
            vec![Offset::End; tps.len()]
        };
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in tps.iter().zip(starts) {
            tpl.add_partition_offset(t, *p, o)
                .map_err(|e| kafka_error("cannot assign partitions", &e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| kafka_error("cannot assign partitions", &e))?;
    }
    let result = consume_loop(&args, &consumer);
    if let Some(g) = &args.group {
        // Commit what was printed, then leave the group (on drop).
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if error_code(&e) == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(e) => {
                let err = kafka_error(&format!("cannot commit offsets of group '{g}'"), &e);
                if result.is_ok() {
                    return Err(err);
                }
                eprintln!("runnel: {}", err.message);
            }
        }
    }
    result
}

fn consume_loop(args: &ConsumeArgs, consumer: &BaseConsumer<Quiet>) -> CliResult<()> {
    let stop = stop_flag();
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    let json = args.conn.output == Format::Json;
    let mut printed: u64 = 0;
    let mut at_end: BTreeSet<(String, i32)> = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if flush(&mut out).is_err() {
                    return Ok(());
                }
            }
            Some(Ok(m)) => {
                at_end.remove(&(m.topic().to_string(), m.partition()));
                let w = if json {
                    write_json(&mut out, &m)
                } else {
                    write_plain(&mut out, &m)
                };
                if w.is_err() || (tty && flush(&mut out).is_err()) {
                    // stdout was closed (`| head`): stop quietly.
                    return Ok(());
                }
                printed += 1;
                if args.group.is_some() {
                    if let Err(e) = consumer.store_offset_from_message(&m) {
                        tracing::debug!(error = %e, "cannot store offset");
                    }
                }
                if args.count.is_some_and(|n| printed >= n) {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert((args.topic.clone(), p));
                if args.exit_at_end {
                    let assigned = consumer
                        .assignment()
                        .map(|a| {
                            a.elements()
                                .iter()
                                .map(|e| (e.topic().to_string(), e.partition()))
                                .collect::<BTreeSet<_>>()
                        })
                        .unwrap_or_default();
                    if !assigned.is_empty() && assigned.is_subset(&at_end) {
                        break;
                    }
                }
            }
            Some(Err(e)) => match error_code(&e) {
                Some(
                    code @ (RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::InvalidGroupId
                    | RDKafkaErrorCode::UnsupportedVersion
                    | RDKafkaErrorCode::UnsupportedFeature),
                ) => {
                    let _ = flush(&mut out);
                    return Err(CliError::new(code_sentence(
                        &format!("cannot consume topic '{}'", args.topic),
                        code,
                    )));
                }
                _ => tracing::debug!(error = %e, "consumer error"),
            },
        }
    }
    let _ = flush(&mut out);
    Ok(())
}

fn flush(out: &mut impl Write) -> io::Result<()> {
    out.flush()
}

fn write_plain(out: &mut impl Write, m: &BorrowedMessage<'_>) -> io::Result<()> {
    out.write_all(m.payload().unwrap_or_default())?;
    out.write_all(b"\n")
}

fn text(b: Option<&[u8]>) -> serde_json::Value {
    match b {
        Some(b) => json!(String::from_utf8_lossy(b)),
        None => serde_json::Value::Null,
    }
}

pub fn message_json(m: &BorrowedMessage<'_>) -> serde_json::Value {
    let headers: Vec<_> = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| json!({"key": h.key, "value": text(h.value)}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": text(m.key()),
        "value": text(m.payload()),
        "headers": headers,
    })
}

fn write_json(out: &mut impl Write, m: &BorrowedMessage<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &message_json(m))?;
    out.write_all(b"\n")
}

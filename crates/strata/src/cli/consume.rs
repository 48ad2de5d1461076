//! `strata consume`: prints records one per line, with optional fields in
//! front as `kafka-console-consumer` prints them (`CreateTime:…`,
//! `Partition:…`, `Offset:…`, headers, key, value, separated by the key
//! separator). With `--group` it consumes as a member of that group and
//! commits what it printed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use super::{reason, topic_partitions, ClientArgs};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Start at the earliest record (with --group: only where the group has
    /// committed nothing, as in Kafka).
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    from_beginning: bool,
    /// Start at this offset in every partition read, or at `earliest` / `latest`.
    #[arg(long, value_name = "N|earliest|latest", conflicts_with = "timestamp")]
    offset: Option<String>,
    /// Start at the first record with a timestamp at or after MS (ms since the epoch).
    #[arg(long, value_name = "MS")]
    timestamp: Option<i64>,
    /// Read only this partition [default: all].
    #[arg(long)]
    partition: Option<i32>,
    /// Consume as a member of this group and commit offsets as records are
    /// printed; with --partition, --offset or --timestamp the partitions are
    /// assigned directly and the group is only used for commits.
    #[arg(long)]
    group: Option<String>,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Exit after this long without a new record [default: run until interrupted].
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    #[arg(long)]
    print_timestamp: bool,
    #[arg(long)]
    print_partition: bool,
    #[arg(long)]
    print_offset: bool,
    /// Headers as k1:v1,k2:v2 (NO_HEADERS when there are none).
    #[arg(long)]
    print_headers: bool,
    #[arg(long)]
    print_key: bool,
    /// Printed between the fields of a line.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    key_separator: String,
}

/// Where reading starts in the partitions that are assigned directly.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    At(Offset),
    Time(i64),
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let explicit = match (&args.offset, args.timestamp) {
        (Some(o), _) => Some(Start::At(parse_offset(o)?)),
        (None, Some(ts)) => Some(Start::Time(ts)),
        (None, None) => None,
    };
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let mut settings = vec![
        ("enable.partition.eof", "false"),
        ("auto.offset.reset", reset),
    ];
    if let Some(g) = &args.group {
        // Offsets are stored only once a record is printed, then committed
        // in the background and once more on the way out.
        settings.extend([
            ("group.id", g.as_str()),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
        ]);
    } else {
        // librdkafka only assigns partitions to a consumer with a group id;
        // this one never joins the group or commits to it.
        settings.extend([
            ("group.id", "strata-console-consumer"),
            ("enable.auto.commit", "false"),
        ]);
    }
    let consumer: BaseConsumer = c.create(&settings)?;
    let metadata = c.metadata(consumer.client(), Some(&args.topic))?;
    let partitions = topic_partitions(&metadata, &args.topic)?;

    let subscribe = args.group.is_some() && args.partition.is_none() && explicit.is_none();
    if subscribe {
        consumer
            .subscribe(&[&args.topic])
            .map_err(|e| anyhow::anyhow!("subscribing: {}", reason(&e)))?;
    } else {
        let chosen = match args.partition {
            Some(p) if !partitions.contains(&p) => bail!(
                "topic '{}' has {} partitions; there is no partition {p}",
                args.topic,
                partitions.len()
            ),
            Some(p) => vec![p],
            None => partitions,
        };
        let start = explicit.unwrap_or(match (&args.group, args.from_beginning) {
            (Some(_), _) => Start::At(Offset::Stored),
            (None, true) => Start::At(Offset::Beginning),
            (None, false) => Start::At(Offset::End),
        });
        let tpl = start_positions(&consumer, c, &args.topic, &chosen, start)?;
        consumer
            .assign(&tpl)
            .map_err(|e| anyhow::anyhow!("assigning partitions: {}", reason(&e)))?;
    }

    let stop = stop_on_signal();
    let idle = args.timeout_ms.map(Duration::from_millis);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && args.max_messages.is_none_or(|m| printed < m) {
        let mut wait = Duration::from_millis(200);
        if let Some(idle) = idle {
            let left = idle.saturating_sub(last.elapsed());
            if left.is_zero() {
                break;
            }
            wait = wait.min(left);
        }
        match consumer.poll(wait) {
            None => {
                let _ = out.flush();
            }
            Some(Err(e)) => fail_or_warn(e, &args.topic)?,
            Some(Ok(m)) => {
                if write_record(&mut out, &m, &args).is_err() {
                    // The reader went away (e.g. `| head`): stop quietly.
                    break;
                }
                printed += 1;
                last = Instant::now();
                if args.group.is_some() {
                    consumer
                        .store_offset_from_message(&m)
                        .map_err(|e| anyhow::anyhow!("storing offset: {}", reason(&e)))?;
                }
            }
        }
    }
    let _ = out.flush();
    drop(out);
    if let Some(g) = &args.group {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => bail!("committing offsets of group '{g}': {}", reason(&e)),
        }
    }
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

fn parse_offset(s: &str) -> anyhow::Result<Offset> {
    match s {
        "earliest" => Ok(Offset::Beginning),
        "latest" => Ok(Offset::End),
        n => match n.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Offset::Offset(n)),
            _ => bail!("--offset {s:?}: expected a non-negative number, earliest or latest"),
        },
    }
}

/// Partitions to assign with their first offset; a timestamp is looked up
/// (ListOffsets), and one past every record means the end.
fn start_positions(
    consumer: &BaseConsumer,
    c: &ClientArgs,
    topic: &str,
    partitions: &[i32],
    start: Start,
) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    let offset = match start {
        Start::At(o) => o,
        Start::Time(ts) => Offset::Offset(ts),
    };
    for &p in partitions {
        tpl.add_partition_offset(topic, p, offset)
            .context("building the assignment")?;
    }
    if let Start::Time(_) = start {
        tpl = consumer
            .offsets_for_times(tpl, c.timeout())
            .map_err(|e| c.unreachable_or(e, "looking up offsets by time"))?;
    }
    Ok(tpl)
}

/// Gives up on errors that will not go away by waiting; reports the rest
/// (librdkafka keeps retrying them) and carries on.
fn fail_or_warn(e: KafkaError, topic: &str) -> anyhow::Result<()> {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            bail!("unknown topic '{topic}'")
        }
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::InvalidGroupId
            | RDKafkaErrorCode::Fatal,
        ) => bail!("consuming: {}", reason(&e)),
        _ if matches!(e, KafkaError::MessageConsumptionFatal(_)) => {
            bail!("consuming: {}", reason(&e))
        }
        _ => {
            tracing::warn!(error = %reason(&e), "consuming");
            Ok(())
        }
    }
}

fn write_record(
    out: &mut impl Write,
    m: &BorrowedMessage<'_>,
    args: &ConsumeArgs,
) -> std::io::Result<()> {
    let sep = args.key_separator.as_bytes();
    if args.print_timestamp {
        match m.timestamp() {
            Timestamp::CreateTime(t) => write!(out, "CreateTime:{t}")?,
            Timestamp::LogAppendTime(t) => write!(out, "LogAppendTime:{t}")?,
            Timestamp::NotAvailable => write!(out, "NO_TIMESTAMP")?,
        }
        out.write_all(sep)?;
    }
    if args.print_partition {
        write!(out, "Partition:{}", m.partition())?;
        out.write_all(sep)?;
    }
    if args.print_offset {
        write!(out, "Offset:{}", m.offset())?;
        out.write_all(sep)?;
    }
    if args.print_headers {
        match m.headers() {
            Some(h) if h.count() > 0 => {
                for (i, header) in h.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(header.key.as_bytes())?;
                    out.write_all(b":")?;
                    out.write_all(header.value.unwrap_or(b"null"))?;
                }
            }
            _ => out.write_all(b"NO_HEADERS")?,
        }
        out.write_all(sep)?;
    }
    if args.print_key {
        out.write_all(m.key().unwrap_or(b"null"))?;
        out.write_all(sep)?;
    }
    out.write_all(m.payload().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

/// A flag raised by SIGINT or SIGTERM, so an endless consume still commits
/// and leaves its group cleanly.
fn stop_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(runtime) = runtime {
        std::thread::spawn(move || {
            runtime.block_on(crate::serve::wait_for_signal());
            raised.store(true, Ordering::Relaxed);
        });
    }
    flag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_like_the_console_consumer() {
        assert_eq!(parse_offset("earliest").unwrap(), Offset::Beginning);
        assert_eq!(parse_offset("latest").unwrap(), Offset::End);
        assert_eq!(parse_offset("42").unwrap(), Offset::Offset(42));
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("soon").is_err());
    }
}

//! `strata produce`: one record per line of standard input, like
//! `kafka-console-producer` (key separator) and kcat `-P` (headers).

use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::util::Timeout;

use super::{parse_pairs, reason, topic_partitions, ClientArgs};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Split each line at the first SEP: the key before it, the value after
    /// (kafka-console-producer's parse.key and key.separator).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Send every record to this partition [default: by key, or spread when keyless].
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements to wait for.
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
}

/// Counts failed deliveries and keeps the first reason, so the command can
/// end with one line instead of one per record.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<(u64, Option<String>)>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            f.0 += 1;
            f.1.get_or_insert_with(|| reason(e));
        }
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let headers = parse_pairs("--header", &args.headers)?;
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let producer: BaseProducer<Deliveries> = c.create_with_context(
        &[
            ("acks", &args.acks),
            ("linger.ms", "5"),
            ("message.timeout.ms", "30000"),
        ],
        Deliveries::default(),
    )?;
    let metadata = c.metadata(producer.client(), Some(&args.topic))?;
    let partitions = topic_partitions(&metadata, &args.topic)?;
    if let Some(p) = args.partition {
        if !partitions.contains(&p) {
            bail!(
                "topic '{}' has {} partitions; there is no partition {p}",
                args.topic,
                partitions.len()
            );
        }
    }

    let mut template = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in &headers {
        template = template.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        strip_line_end(&mut line);
        let (key, value) = match separator {
            None => (None, &line[..]),
            Some(sep) => match split_at(&line, sep) {
                Some((k, v)) => (Some(k), v),
                None => bail!(
                    "line {} has no key separator {:?} (sent {sent} records before it)",
                    sent + 1,
                    args.key_separator.as_deref().unwrap_or_default()
                ),
            },
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if !headers.is_empty() {
            record = record.headers(template.clone());
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Wait for deliveries to make room rather than fail.
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => bail!("sending line {}: {}", sent + 1, reason(&e)),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    // Failed records are counted by the delivery callback; message.timeout.ms
    // bounds how long this waits.
    let _ = producer.flush(Timeout::Never);
    let failed = producer
        .context()
        .failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if failed.0 > 0 {
        bail!(
            "{} of {sent} records were not delivered: {}",
            failed.0,
            failed.1.unwrap_or_default()
        );
    }
    Ok(())
}

/// Drops a trailing `\n` or `\r\n`, as Kafka's line reader does.
fn strip_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

fn split_at<'a>(line: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = line.windows(sep.len()).position(|w| w == sep)?;
    Some((&line[..at], &line[at + sep.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_at(b"k1::v::1", b"::"),
            Some((&b"k1"[..], &b"v::1"[..]))
        );
        assert_eq!(split_at(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_at(b"value", b":"), None);
    }

    #[test]
    fn line_ends_are_dropped() {
        for (raw, want) in [
            (&b"a\r\n"[..], &b"a"[..]),
            (b"a\n", b"a"),
            (b"a", b"a"),
            (b"\n", b""),
        ] {
            let mut v = raw.to_vec();
            strip_line_end(&mut v);
            assert_eq!(v, want);
        }
    }
}

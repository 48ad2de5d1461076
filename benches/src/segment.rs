//! `strata-segment-bench`: how fast one core turns produced batches into a Parquet segment
//! (what a seal does after the batches are in memory) and a segment back into batches
//! (what a cold read does after its GETs), without sockets or a store, so a change to
//! the segment format is measured on its own.
//!
//! Prints, per payload kind, seal and read rate in MB of record batches per second (the
//! median of `--rounds` runs, and the best, which shared machines disturb least), and the
//! segment's size against the batches'.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use strata_format::segment::write_segment_grouped;
use strata_format::{
    decode_checked_batch, encode_batch, read_segment_bytes, BatchSpec, Record, SegmentInfo,
    SegmentWriteOptions,
};

#[derive(Parser)]
#[command(about = "Seal and read rate of Parquet segments, one core, in memory")]
struct Args {
    /// Records in the segment.
    #[arg(long, default_value_t = 65_536)]
    records: usize,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records per produced batch (librdkafka fills a 1 MiB batch with about 1,000 records
    /// of 1 KiB).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    /// Payload kinds: `random` (incompressible, as the broker bench sends) and `json`
    /// (event-like text that compresses).
    #[arg(long, value_delimiter = ',', default_value = "random,json")]
    payloads: Vec<String>,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{} records x {} B in batches of {}, median of {} rounds, one thread",
        args.records, args.record_bytes, args.batch_records, args.rounds
    );
    println!("payload | seal MB/s median (best) | read MB/s median (best) | segment / batches");
    for kind in &args.payloads {
        let batches = produced_batches(&args, kind)?;
        let total: usize = batches.iter().map(Bytes::len).sum();
        let info = SegmentInfo {
            topic: "bench".into(),
            topic_id: "bench".into(),
            partition: 0,
        };
        let opts = SegmentWriteOptions::default();
        let (mut seals, mut reads) = (Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..args.rounds {
            let started = Instant::now();
            let decoded = batches.iter().map(decode_checked_batch);
            let (file, _) = write_segment_grouped(&info, decoded, &opts)?;
            seals.push(started.elapsed());
            size = file.len();

            let started = Instant::now();
            let served = read_segment_bytes(file, 0)?;
            reads.push(started.elapsed());
            let served: usize = served.iter().map(Bytes::len).sum();
            anyhow::ensure!(
                served == total,
                "read back {served} bytes of batches, wrote {total}"
            );
        }
        println!(
            "{kind} | {} | {} | {:.3}",
            rates(total, &mut seals),
            rates(total, &mut reads),
            size as f64 / total as f64
        );
    }
    Ok(())
}

fn rates(bytes: usize, times: &mut [Duration]) -> String {
    times.sort();
    let rate = |t: Duration| bytes as f64 / 1e6 / t.as_secs_f64();
    format!(
        "{:.0} ({:.0})",
        rate(times[times.len() / 2]),
        rate(times[0])
    )
}

/// Uncompressed v2 batches as a producer would send them, offsets from 0.
fn produced_batches(args: &Args, kind: &str) -> anyhow::Result<Vec<Bytes>> {
    let mut next = payload_source(kind)?;
    let mut out = Vec::new();
    let mut offset = 0i64;
    while (offset as usize) < args.records {
        let n = args.batch_records.min(args.records - offset as usize);
        let records: Vec<Record> = (0..n as i64)
            .map(|i| Record {
                offset: offset + i,
                timestamp: 1_700_000_000_000 + offset + i,
                key: Some(Bytes::from(format!("user-{}", (offset + i) % 5000))),
                value: Some(Bytes::from(next(args.record_bytes))),
                headers: Vec::new(),
            })
            .collect();
        let spec = BatchSpec {
            base_offset: offset,
            partition_leader_epoch: 0,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        out.push(encode_batch(&spec, &records));
        offset += n as i64;
    }
    Ok(out)
}

type PayloadSource = Box<dyn FnMut(usize) -> Vec<u8>>;

fn payload_source(kind: &str) -> anyhow::Result<PayloadSource> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    match kind {
        "random" => Ok(Box::new(move |size| {
            (0..size).map(|_| (next() >> 24) as u8).collect()
        })),
        "json" => {
            const EVENTS: [&str; 4] = ["page_view", "add_to_cart", "checkout", "search"];
            Ok(Box::new(move |size| {
                let mut s = String::with_capacity(size + 128);
                while s.len() < size {
                    let r = next();
                    s.push_str(&format!(
                        r#"{{"user_id":{},"event":"{}","url":"/products/{}","price_cents":{},"session":"{:016x}"}}"#,
                        r % 100_000,
                        EVENTS[(r >> 20) as usize % EVENTS.len()],
                        (r >> 24) % 10_000,
                        (r >> 40) % 50_000,
                        next(),
                    ));
                }
                s.truncate(size);
                s.into_bytes()
            }))
        }
        other => anyhow::bail!("unknown payload kind {other} (random, json)"),
    }
}

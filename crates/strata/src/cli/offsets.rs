//! `strata group reset-offsets`: plans new committed offsets for a group
//! that has no active members, prints the plan, and commits it only with
//! `--execute` (Kafka's `kafka-consumer-groups --reset-offsets`).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::group::{self, Partitions};
use super::{datetime, reason, topic_partitions, ClientArgs, Table};

#[derive(Args, Debug)]
pub struct ResetArgs {
    /// Consumer group id.
    #[arg(long)]
    group: String,
    /// Topic to reset, optionally only some partitions: TOPIC or TOPIC:0,1,2
    /// (repeatable).
    #[arg(
        long = "topic",
        value_name = "TOPIC[:P,...]",
        required_unless_present = "all_topics"
    )]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    #[command(flatten)]
    to: Target,
    /// Only print the plan (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

/// Where the offsets go; exactly one is required.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
struct Target {
    /// The log start of each partition.
    #[arg(long)]
    to_earliest: bool,
    /// The log end of each partition.
    #[arg(long)]
    to_latest: bool,
    /// Where the group is now (a no-op that shows the current offsets).
    #[arg(long)]
    to_current: bool,
    /// This offset, kept within the log start and end.
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// The first record at or after this time, e.g. 2024-05-01T12:00:00.000Z
    /// (UTC without an offset).
    #[arg(long, value_name = "ISO-8601")]
    to_datetime: Option<String>,
    /// Move the committed offset by N (negative: back), kept within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
}

/// What is known about one partition when planning.
#[derive(Debug, Clone, Copy)]
struct Known {
    committed: Option<i64>,
    start: i64,
    end: i64,
    /// The first offset at or after the requested time, if any.
    at_time: Option<i64>,
}

/// The new offset of one partition.
fn plan(to: &Target, k: Known) -> Result<i64, String> {
    let clamp = |o: i64| o.clamp(k.start, k.end.max(k.start));
    if to.to_earliest {
        Ok(k.start)
    } else if to.to_latest {
        Ok(k.end)
    } else if to.to_current {
        k.committed.ok_or_else(|| "nothing committed".to_string())
    } else if let Some(o) = to.to_offset {
        Ok(clamp(o))
    } else if to.to_datetime.is_some() {
        Ok(k.at_time.map_or(k.end, clamp))
    } else if let Some(n) = to.shift_by {
        match k.committed {
            Some(c) => Ok(clamp(c.saturating_add(n))),
            None => Err("cannot shift: nothing committed".to_string()),
        }
    } else {
        Err("no reset target".to_string())
    }
}

pub fn run(c: &ClientArgs, args: ResetArgs) -> anyhow::Result<()> {
    let g = &args.group;
    let time = match &args.to.to_datetime {
        Some(s) => Some(datetime::parse_millis(s)?),
        None => None,
    };
    let consumer = group::group_consumer(c, g)?;
    let metadata = c.metadata(consumer.client(), None)?;
    let state = group::fetch_group(c, &consumer, g)?;
    if !state.members.is_empty() {
        bail!(
            "assignments can only be reset if the group '{g}' is inactive, but the current state is {} with {} active member(s); stop its consumers first",
            state.state,
            state.members.len()
        );
    }

    let mut chosen = Partitions::new();
    if args.all_topics {
        let mut every = Partitions::new();
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                every.insert((t.name().to_string(), p.id()));
            }
        }
        chosen.extend(group::committed(c, &consumer, &every)?.into_keys());
        if chosen.is_empty() {
            bail!("group '{g}' has no committed offsets to reset");
        }
    }
    for spec in &args.topics {
        let (topic, wanted) = match spec.split_once(':') {
            None => (spec.as_str(), None),
            Some((t, ps)) => {
                let ps: Vec<i32> = ps
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--topic {spec:?}: partitions must be numbers"))?;
                (t, Some(ps))
            }
        };
        let exists = topic_partitions(&metadata, topic)?;
        for p in wanted.unwrap_or_else(|| exists.clone()) {
            if !exists.contains(&p) {
                bail!("topic '{topic}' has no partition {p}");
            }
            chosen.insert((topic.to_string(), p));
        }
    }

    let committed = group::committed(c, &consumer, &chosen)?;
    let starts = group::log_offsets(c, &consumer, &chosen, Offset::Beginning)?;
    let ends = group::log_offsets(c, &consumer, &chosen, Offset::End)?;
    let by_time = match time {
        Some(ms) => group::log_offsets(c, &consumer, &chosen, Offset::Offset(ms))?,
        None => BTreeMap::new(),
    };
    let mut new = BTreeMap::new();
    for tp in &chosen {
        let known = Known {
            committed: committed.get(tp).copied(),
            start: starts.get(tp).copied().flatten().unwrap_or(0),
            end: ends.get(tp).copied().flatten().unwrap_or(0),
            at_time: by_time.get(tp).copied().flatten(),
        };
        let offset =
            plan(&args.to, known).map_err(|why| anyhow::anyhow!("{}-{}: {why}", tp.0, tp.1))?;
        new.insert(tp.clone(), offset);
    }

    if args.execute {
        let mut tpl = TopicPartitionList::with_capacity(new.len());
        for ((t, p), o) in &new {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .map_err(|e| anyhow::anyhow!("{t}-{p}: {}", reason(&e)))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| match e {
                KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::RebalanceInProgress,
                ) => anyhow::anyhow!(
                    "group '{g}' became active while resetting; stop its consumers and retry"
                ),
                other => c.unreachable_or(other, &format!("committing offsets of group '{g}'")),
            })?;
    } else {
        eprintln!("Dry run: nothing was changed; add --execute to commit these offsets.");
    }
    let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    for ((topic, p), o) in new {
        t.row(vec![g.clone(), topic, p.to_string(), o.to_string()]);
    }
    print!("{}", t.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            to_earliest: false,
            to_latest: false,
            to_current: false,
            to_offset: None,
            to_datetime: None,
            shift_by: None,
        }
    }

    const K: Known = Known {
        committed: Some(40),
        start: 10,
        end: 100,
        at_time: Some(55),
    };

    #[test]
    fn each_target_lands_inside_the_log() {
        let t = |f: fn(&mut Target)| {
            let mut t = target();
            f(&mut t);
            t
        };
        assert_eq!(plan(&t(|t| t.to_earliest = true), K), Ok(10));
        assert_eq!(plan(&t(|t| t.to_latest = true), K), Ok(100));
        assert_eq!(plan(&t(|t| t.to_current = true), K), Ok(40));
        assert_eq!(plan(&t(|t| t.to_offset = Some(70)), K), Ok(70));
        assert_eq!(plan(&t(|t| t.to_offset = Some(5)), K), Ok(10));
        assert_eq!(plan(&t(|t| t.to_offset = Some(500)), K), Ok(100));
        assert_eq!(plan(&t(|t| t.shift_by = Some(-35)), K), Ok(10));
        assert_eq!(plan(&t(|t| t.shift_by = Some(7)), K), Ok(47));
        assert_eq!(plan(&t(|t| t.shift_by = Some(i64::MAX)), K), Ok(100));
        let by_time = t(|t| t.to_datetime = Some("x".into()));
        assert_eq!(plan(&by_time, K), Ok(55));
        // Nothing at or after the time: the end, as in Kafka.
        assert_eq!(plan(&by_time, Known { at_time: None, ..K }), Ok(100));
    }

    #[test]
    fn shifting_needs_a_committed_offset() {
        let mut t = target();
        t.shift_by = Some(1);
        assert!(plan(
            &t,
            Known {
                committed: None,
                ..K
            }
        )
        .is_err());
    }
}

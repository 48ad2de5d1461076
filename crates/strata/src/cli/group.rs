//! `strata group list|describe|reset-offsets|delete`: what
//! `kafka-consumer-groups` does. Membership comes from DescribeGroups (the
//! member assignments decoded as Kafka's consumer protocol), positions from
//! OffsetFetch, log ends from ListOffsets.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use clap::{Args, Subcommand};
use futures::executor::block_on;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{self, ResetArgs};
use super::{describe as describe_code, ClientArgs, Table};

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List consumer group names, one per line (kafka-consumer-groups --list).
    List {
        /// Print each group's state too.
        #[arg(long)]
        state: bool,
    },
    /// Committed offsets, log ends, lag and members (kafka-consumer-groups --describe).
    Describe {
        /// Consumer group id.
        #[arg(long)]
        group: String,
    },
    /// Move a group's committed offsets; a dry run unless --execute
    /// (kafka-consumer-groups --reset-offsets).
    ResetOffsets(ResetArgs),
    /// Delete a group that has no active members, with its offsets
    /// (kafka-consumer-groups --delete).
    Delete {
        /// Consumer group id.
        #[arg(long)]
        group: String,
    },
}

/// A group member as DescribeGroups reports it.
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<(String, i32)>,
}

/// A group's state and members.
pub struct GroupState {
    pub state: String,
    pub members: Vec<Member>,
}

pub type Partitions = BTreeSet<(String, i32)>;

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let c = &args.client;
    match args.command {
        GroupCommand::List { state } => {
            let consumer: BaseConsumer = c.create(&[])?;
            c.metadata(consumer.client(), None)?;
            let list = consumer
                .fetch_group_list(None, c.timeout())
                .map_err(|e| c.unreachable_or(e, "listing groups"))?;
            let mut groups: Vec<(String, String)> = list
                .groups()
                .iter()
                .map(|g| (g.name().to_string(), g.state().to_string()))
                .collect();
            groups.sort();
            if state {
                let mut t = Table::new(&["GROUP", "STATE"]);
                for (name, state) in groups {
                    t.row(vec![name, state]);
                }
                print!("{}", t.render());
            } else {
                for (name, _) in groups {
                    println!("{name}");
                }
            }
        }
        GroupCommand::Describe { group } => describe(c, &group)?,
        GroupCommand::ResetOffsets(reset) => offsets::run(c, reset)?,
        GroupCommand::Delete { group } => {
            let admin: AdminClient<DefaultClientContext> = c.create(&[])?;
            c.metadata(admin.inner(), None)?;
            let opts = AdminOptions::new()
                .request_timeout(Some(c.timeout()))
                .operation_timeout(Some(c.timeout()));
            let results = block_on(admin.delete_groups(&[&group], &opts))
                .map_err(|e| c.unreachable_or(e, "deleting group"))?;
            for r in results {
                match r {
                    Ok(_) => println!("Deleted consumer group '{group}'."),
                    Err((_, RDKafkaErrorCode::NonEmptyGroup)) => bail!(
                        "consumer group '{group}' has active members; stop its consumers first"
                    ),
                    Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {
                        bail!("consumer group '{group}' does not exist")
                    }
                    Err((_, code)) => {
                        bail!("deleting consumer group '{group}': {}", describe_code(code))
                    }
                }
            }
        }
    }
    Ok(())
}

fn describe(c: &ClientArgs, group: &str) -> anyhow::Result<()> {
    let consumer = group_consumer(c, group)?;
    let metadata = c.metadata(consumer.client(), None)?;
    let state = fetch_group(c, &consumer, group)?;
    let mut every = Partitions::new();
    for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            every.insert((t.name().to_string(), p.id()));
        }
    }
    let committed = committed(c, &consumer, &every)?;
    let owner: BTreeMap<(String, i32), &Member> = state
        .members
        .iter()
        .flat_map(|m| m.assignment.iter().map(move |tp| (tp.clone(), m)))
        .collect();
    let shown: Partitions = committed.keys().chain(owner.keys()).cloned().collect();
    if shown.is_empty() && state.members.is_empty() && matches!(state.state.as_str(), "Dead" | "") {
        bail!("consumer group '{group}' does not exist");
    }
    let ends = log_offsets(c, &consumer, &shown, Offset::End)?;

    if state.members.is_empty() {
        eprintln!("Consumer group '{group}' has no active members.");
    }
    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    let dash = || "-".to_string();
    for tp in &shown {
        let current = committed.get(tp).copied();
        let end = ends.get(tp).copied().flatten();
        let member = owner.get(tp);
        t.row(vec![
            group.to_string(),
            tp.0.clone(),
            tp.1.to_string(),
            current.map_or_else(dash, |o| o.to_string()),
            end.map_or_else(dash, |o| o.to_string()),
            match (current, end) {
                (Some(cur), Some(end)) => (end - cur).max(0).to_string(),
                _ => dash(),
            },
            member.map_or_else(dash, |m| m.id.clone()),
            member.map_or_else(dash, |m| m.host.clone()),
            member.map_or_else(dash, |m| m.client_id.clone()),
        ]);
    }
    // Members without partitions still get a line, as in Kafka's tool.
    for m in state.members.iter().filter(|m| m.assignment.is_empty()) {
        t.row(vec![
            group.to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            m.id.clone(),
            m.host.clone(),
            m.client_id.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// A consumer that carries the group id for OffsetFetch and OffsetCommit but
/// never joins the group.
pub fn group_consumer(c: &ClientArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    c.create(&[("group.id", group), ("enable.auto.commit", "false")])
}

pub fn fetch_group(
    c: &ClientArgs,
    consumer: &BaseConsumer,
    group: &str,
) -> anyhow::Result<GroupState> {
    let list = consumer
        .fetch_group_list(Some(group), c.timeout())
        .map_err(|e| c.unreachable_or(e, &format!("describing group '{group}'")))?;
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupState {
            state: "Dead".to_string(),
            members: Vec::new(),
        });
    };
    let consumer_protocol = info.protocol_type() == "consumer";
    let members = info
        .members()
        .iter()
        .map(|m| Member {
            id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            host: m.client_host().to_string(),
            assignment: match m.assignment() {
                Some(bytes) if consumer_protocol => decode_assignment(bytes),
                _ => Vec::new(),
            },
        })
        .collect();
    Ok(GroupState {
        state: info.state().to_string(),
        members,
    })
}

/// The partitions in a consumer-protocol assignment (a version, then the
/// versioned body); anything unreadable counts as no partitions.
pub fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    let Some((version, mut body)) = bytes
        .split_first_chunk::<2>()
        .map(|(v, rest)| (i16::from_be_bytes(*v), rest))
    else {
        return Vec::new();
    };
    // Later versions only append fields, so the newest one known reads them.
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3)) else {
        return Vec::new();
    };
    a.assigned_partitions
        .into_iter()
        .flat_map(|tp| {
            let topic = tp.topic.0.to_string();
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect()
}

/// Committed offsets of the consumer's group among `partitions`; partitions
/// with nothing committed are left out.
pub fn committed(
    c: &ClientArgs,
    consumer: &BaseConsumer,
    partitions: &Partitions,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let tpl = consumer
        .committed_offsets(list(partitions, Offset::Invalid)?, c.timeout())
        .map_err(|e| c.unreachable_or(e, "fetching committed offsets"))?;
    Ok(tpl
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// ListOffsets for every partition at once: `Offset::End` gives log end
/// offsets, `Offset::Beginning` log start offsets, `Offset::Offset(ms)` the
/// first offset at or after a time (`None` when there is none).
pub fn log_offsets(
    c: &ClientArgs,
    consumer: &BaseConsumer,
    partitions: &Partitions,
    at: Offset,
) -> anyhow::Result<BTreeMap<(String, i32), Option<i64>>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let tpl = consumer
        .offsets_for_times(list(partitions, at)?, c.timeout())
        .map_err(|e| c.unreachable_or(e, "listing offsets"))?;
    let mut out = BTreeMap::new();
    for e in tpl.elements() {
        if let Err(err) = e.error() {
            bail!(
                "listing offsets of {}-{}: {}",
                e.topic(),
                e.partition(),
                super::reason(&err)
            );
        }
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        out.insert((e.topic().to_string(), e.partition()), offset);
    }
    Ok(out)
}

pub fn list(partitions: &Partitions, offset: Offset) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (t, p) in partitions {
        tpl.add_partition_offset(t, *p, offset)
            .map_err(|e| anyhow::anyhow!("{t}-{p}: {}", super::reason(&e)))?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16) -> Vec<u8> {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("audit")))
                .with_partitions(vec![5]),
        ]);
        let mut out = version.to_be_bytes().to_vec();
        a.encode(&mut out, version.clamp(0, 3)).unwrap();
        out
    }

    #[test]
    fn assignments_decode_in_every_version() {
        for v in 0..=3 {
            assert_eq!(
                decode_assignment(&encoded(v)),
                vec![
                    ("orders".to_string(), 0),
                    ("orders".to_string(), 2),
                    ("audit".to_string(), 5)
                ],
                "version {v}"
            );
        }
    }

    #[test]
    fn unreadable_assignments_are_empty() {
        assert!(decode_assignment(&[]).is_empty());
        assert!(decode_assignment(&[0]).is_empty());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 9]).is_empty());
        let mut cut = encoded(1);
        cut.truncate(cut.len() - 3);
        assert!(decode_assignment(&cut).is_empty());
    }
}

//! `strata topic create|list|describe|alter|delete`: what `kafka-topics`
//! (and `kafka-configs` for topic configs) does, through the admin API.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{describe, parse_pairs, topic_partitions, ClientArgs};

type Admin = AdminClient<DefaultClientContext>;

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic (kafka-topics --create).
    Create {
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Number of partitions [default: the broker's num.partitions].
        #[arg(long)]
        partitions: Option<i32>,
        /// Copies of each partition [default: the broker's default.replication.factor].
        #[arg(long)]
        replication_factor: Option<i32>,
        /// A topic config, e.g. retention.ms=86400000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed quietly if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names, one per line (kafka-topics --list).
    List,
    /// Partitions, leaders and non-default configs (kafka-topics --describe).
    Describe {
        /// Only this topic [default: all topics].
        #[arg(long)]
        topic: Option<String>,
    },
    /// Add partitions and change configs (kafka-topics --alter, kafka-configs --alter).
    Alter {
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// New, larger number of partitions.
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a topic config (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a topic config, returning it to the default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic and its data (kafka-topics --delete).
    Delete {
        /// Topic name.
        #[arg(long)]
        topic: String,
    },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let admin: Admin = c.create(&[])?;
    let opts = AdminOptions::new()
        .request_timeout(Some(c.timeout()))
        .operation_timeout(Some(c.timeout()));
    let metadata = c.metadata(admin.inner(), None)?;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let configs = parse_pairs("--config", &configs)?;
            let replication = TopicReplication::Fixed(replication_factor.unwrap_or(-1));
            let mut new = NewTopic::new(&topic, partitions.unwrap_or(-1), replication);
            for (k, v) in configs {
                new = new.set(k, v);
            }
            let results = block_on(admin.create_topics([&new], &opts))
                .map_err(|e| c.unreachable_or(e, "creating topic"))?;
            for r in results {
                match r {
                    Ok(_) => println!("Created topic {topic}."),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if if_not_exists => {}
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        bail!("topic '{topic}' already exists")
                    }
                    Err((_, code)) => bail!("creating topic '{topic}': {}", describe(code)),
                }
            }
        }
        TopicCommand::List => {
            let mut names: Vec<&str> = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name())
                .collect();
            names.sort_unstable();
            for n in names {
                println!("{n}");
            }
        }
        TopicCommand::Describe { topic } => {
            let mut names: Vec<&str> = match &topic {
                Some(t) => {
                    topic_partitions(&metadata, t)?;
                    vec![t.as_str()]
                }
                None => metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.name())
                    .collect(),
            };
            names.sort_unstable();
            let all_configs = configs_of(&admin, c, &opts, &names, false)?;
            for (name, configs) in names.into_iter().zip(all_configs) {
                let t = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name)
                    .context("topic vanished from metadata")?;
                let mut parts: Vec<_> = t.partitions().iter().collect();
                parts.sort_by_key(|p| p.id());
                let rf = parts.first().map_or(0, |p| p.replicas().len());
                let configs: Vec<String> =
                    configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "Topic: {name}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {}",
                    parts.len(),
                    configs.join(",")
                );
                for p in parts {
                    println!(
                        "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        p.id(),
                        if p.leader() < 0 {
                            "none".to_string()
                        } else {
                            p.leader().to_string()
                        },
                        join(p.replicas()),
                        join(p.isr()),
                    );
                }
            }
        }
        TopicCommand::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            let current = topic_partitions(&metadata, &topic)?.len();
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            let sets = parse_pairs("--config", &configs)?;
            if let Some(n) = partitions {
                if n < 1 || n as usize <= current {
                    bail!(
                        "topic '{topic}' has {current} partitions; --partitions can only increase that"
                    );
                }
                let new = NewPartitions::new(&topic, n as usize);
                let results = block_on(admin.create_partitions([&new], &opts))
                    .map_err(|e| c.unreachable_or(e, "adding partitions"))?;
                for r in results {
                    if let Err((_, code)) = r {
                        bail!("adding partitions to topic '{topic}': {}", describe(code));
                    }
                }
                println!("Topic {topic} now has {n} partitions.");
            }
            if !sets.is_empty() || !delete_configs.is_empty() {
                // rdkafka only offers the whole-set AlterConfigs, so the new
                // set is this topic's current overrides with the changes applied.
                let mut overrides = current_configs(&admin, c, &opts, &topic, true)?;
                for k in &delete_configs {
                    overrides.remove(k);
                }
                for (k, v) in sets {
                    overrides.insert(k.to_string(), v.to_string());
                }
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&topic));
                for (k, v) in &overrides {
                    alter = alter.set(k, v);
                }
                let results = block_on(admin.alter_configs([&alter], &opts))
                    .map_err(|e| c.unreachable_or(e, "altering configs"))?;
                for r in results {
                    if let Err((_, code)) = r {
                        bail!("altering configs of topic '{topic}': {}", describe(code));
                    }
                }
                // rdkafka drops the broker's per-topic verdict on AlterConfigs,
                // so a refused change only shows as configs left as they were.
                let mut applied = false;
                for _ in 0..10 {
                    if current_configs(&admin, c, &opts, &topic, true)? == overrides {
                        applied = true;
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                if !applied {
                    bail!(
                        "altering configs of topic '{topic}': the broker refused the change (an unknown config name or an invalid value)"
                    );
                }
                println!("Completed updating config for topic {topic}.");
            }
        }
        TopicCommand::Delete { topic } => {
            topic_partitions(&metadata, &topic)?;
            let results = block_on(admin.delete_topics(&[&topic], &opts))
                .map_err(|e| c.unreachable_or(e, "deleting topic"))?;
            for r in results {
                match r {
                    Ok(_) => println!("Deleted topic {topic}."),
                    Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                        bail!("unknown topic '{topic}'")
                    }
                    Err((_, code)) => bail!("deleting topic '{topic}': {}", describe(code)),
                }
            }
        }
    }
    Ok(())
}

/// A topic's configs that differ from the defaults; with `only_topic_overrides`,
/// just those set on the topic itself (not inherited from broker settings).
fn current_configs(
    admin: &Admin,
    c: &ClientArgs,
    opts: &AdminOptions,
    topic: &str,
    only_topic_overrides: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut all = configs_of(admin, c, opts, &[topic], only_topic_overrides)?;
    all.pop().context("no configs returned")
}

/// [`current_configs`] of several topics in one request, in their order.
fn configs_of(
    admin: &Admin,
    c: &ClientArgs,
    opts: &AdminOptions,
    topics: &[&str],
    only_topic_overrides: bool,
) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = block_on(admin.describe_configs(&specs, opts))
        .map_err(|e| c.unreachable_or(e, "describing configs"))?;
    if results.len() != topics.len() {
        bail!(
            "describing configs: asked for {} topics, got {}",
            topics.len(),
            results.len()
        );
    }
    let mut out = Vec::with_capacity(topics.len());
    for (topic, r) in topics.iter().zip(results) {
        let resource = match r {
            Ok(res) => res,
            Err(RDKafkaErrorCode::UnknownTopicOrPartition) => bail!("unknown topic '{topic}'"),
            Err(code) => bail!("describing configs of topic '{topic}': {}", describe(code)),
        };
        let mut configs = BTreeMap::new();
        for e in resource.entries {
            let wanted = if only_topic_overrides {
                e.source == ConfigSource::DynamicTopic
            } else {
                !e.is_default && e.source != ConfigSource::Default
            };
            if wanted && !e.is_sensitive {
                if let Some(v) = e.value {
                    configs.insert(e.name, v);
                }
            }
        }
        out.push(configs);
    }
    Ok(out)
}

fn join(ids: &[i32]) -> String {
    let v: Vec<String> = ids.iter().map(i32::to_string).collect();
    v.join(",")
}

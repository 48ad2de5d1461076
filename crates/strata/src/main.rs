//! The `strata` binary: `strata serve` runs a broker (with the metadata
//! service in-process for a single node); `topic`, `group`, `produce` and
//! `consume` are Kafka clients for any Kafka-compatible broker.

mod cli;
mod malloc;
mod meta;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Kafka-compatible streaming on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: a complete single-node cluster on
    /// 127.0.0.1:9092 keeping everything under ./strata-data.
    Serve(serve::ServeArgs),
    /// Run the metadata service on its own (for a cluster of brokers).
    Meta(meta::MetaArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::TopicArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(cli::group::GroupArgs),
    /// Send each line of standard input as a record.
    Produce(cli::produce::ProduceArgs),
    /// Print records, one per line.
    Consume(cli::consume::ConsumeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_) | Command::Meta(_));
    // The client commands report failures in one line of their own, so
    // librdkafka's connection chatter stays hidden unless STRATA_LOG asks.
    let default_filter = if serving {
        "info"
    } else {
        "warn,librdkafka=off,rdkafka=off"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => {
            malloc::limit_arenas();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(serve::run(args));
        }
        Command::Meta(args) => {
            malloc::limit_arenas();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return runtime.block_on(meta::run(args));
        }
        Command::Topic(args) => cli::topic::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

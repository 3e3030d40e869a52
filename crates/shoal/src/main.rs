//! The `shoal` command: start a node, or talk to a running one.

mod cli;
mod config;
mod credentials;
mod runfile;
mod start;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, RootArg};

/// Shoal: a clustered, multi-master database that speaks Harper's APIs.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground until SIGTERM or SIGINT.
    Start {
        #[command(flatten)]
        root: RootArg,
        // Boxed: the overrides are many, and the other commands carry little.
        #[command(flatten)]
        overrides: Box<Overrides>,
    },
    /// Say whether the node of a root folder is running and healthy.
    Status {
        #[command(flatten)]
        root: RootArg,
    },
    /// Stop the node of a root folder (SIGTERM, then wait for it to exit).
    Stop {
        #[command(flatten)]
        root: RootArg,
    },
    /// Print the version.
    Version,
    /// Send an operation to a running node: `shoal op describe_table database=dev table=dog`.
    Op(cli::op::OpArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start { root, overrides } => start::run(&root.root, &overrides),
        Command::Status { root } => cli::status::run(&root.root),
        Command::Stop { root } => cli::stop::run(&root.root),
        Command::Version => {
            println!("shoal {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Op(args) => cli::op::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

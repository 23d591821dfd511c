//! `engram`, the command line of the engram memory runtime.
//!
//! One subcommand per task; each lives in its own module and returns the exit
//! status the process should end with.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod kv;
mod report;
mod run;
mod sim;
mod sys;

#[derive(Debug, Parser)]
#[command(name = "engram", version, about = "The engram memory runtime")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run a program on the hardened allocator (LD_PRELOAD) and report what it saw.
    Run(run::RunArgs),
    /// KV-cache tools: `engram kv replay [TRACE]` replays a serving trace.
    Kv(kv::KvArgs),
    /// Replay a trace through placement policies and compare them (table + SVG).
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Commands::Run(args) => run::run(args),
        Commands::Kv(args) => kv::run(args),
        Commands::Sim(args) => sim::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let _ = writeln!(std::io::stderr().lock(), "engram: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

//! Command-line interface: argument definitions and dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod config;
mod demo;
mod keys;
mod publish;
mod serve;
mod subscribe;
mod token;

/// Herald: a real-time push server speaking Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub.
    Serve(serve::ServeArgs),
    /// Print the effective configuration of `herald serve` (same options; secrets masked).
    Config(serve::ServeArgs),
    /// Publish an update to a hub and print its id.
    Publish(publish::PublishArgs),
    /// Subscribe to an event stream (any SSE URL) and print each event.
    Subscribe(subscribe::SubscribeArgs),
    /// Mint a JWT for publishers or subscribers.
    Token(token::TokenArgs),
    /// Load generator: measure a hub.
    Bench(bench::BenchArgs),
}

/// Parses the command line (with the configuration file's settings added).
pub fn parse() -> Result<(Cli, Vec<std::ffi::OsString>), ExitCode> {
    let argv = match config::apply_file(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(message) => {
            eprintln!("herald: {message}");
            return Err(ExitCode::from(2));
        }
    };
    Ok((Cli::parse_from(&argv), argv))
}

/// Runs the chosen subcommand and returns the process exit code.
pub async fn run(cli: Cli, argv: Vec<std::ffi::OsString>) -> ExitCode {
    match cli.command {
        Command::Config(_) => match config::print_effective(&argv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("herald: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => serve::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Token(args) => token::run(args),
        Command::Bench(args) => bench::run(args).await,
    }
}

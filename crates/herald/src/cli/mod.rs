//! Command-line interface: argument definitions and dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Publish an update to a hub and print its id.
    Publish(publish::PublishArgs),
    /// Subscribe to an event stream (any SSE URL) and print each event.
    Subscribe(subscribe::SubscribeArgs),
    /// Mint a JWT for publishers or subscribers.
    Token(token::TokenArgs),
}

/// Runs the chosen subcommand and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Subscribe(args) => subscribe::run(args).await,
        Command::Token(args) => token::run(args),
    }
}

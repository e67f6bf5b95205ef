//! `herald subscribe URL`: an EventSource on the command line.
//!
//! Events go to stdout (text or one JSON object per line); connection notes and errors go to
//! stderr. Exit status: 0 when `--count` is reached or, with `--no-reconnect`, when the stream ends;
//! 1 when the connection fails for good (a status other than 200, a wrong content type, or with
//! `--no-reconnect` a network error); 2 for bad arguments; 130 on Ctrl-C.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use futures_util::StreamExt;
use herald_client::{ClientError, ClientEvent, EventSource, MessageEvent};
use serde::Serialize;

/// Arguments of `herald subscribe`.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// The event stream's URL (http:// or https://).
    url: String,
    /// How to print events: `text` (the event-stream fields) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Send this Last-Event-ID on the first connection (resume after it).
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Add a request header, e.g. -H 'Authorization: Bearer TOKEN' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Exit (0) when the server ends the stream instead of reconnecting; a refused connection
    /// exits 1.
    #[arg(long)]
    no_reconnect: bool,
    /// Exit (0) after printing N events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Speak HTTP/2 over cleartext from the start (h2c with prior knowledge).
    #[arg(long)]
    http2_prior_knowledge: bool,
    /// Also trust the CA certificate(s) in this PEM file (for self-signed hubs).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {raw:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("the header {raw:?} has no name before ':'"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a str,
    id: &'a str,
}

/// Runs the subscription until it ends; returns the exit code.
pub async fn run(args: SubscribeArgs) -> ExitCode {
    let mut builder = EventSource::builder(&args.url)
        .reconnect(!args.no_reconnect)
        .http2_prior_knowledge(args.http2_prior_knowledge);
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    if let Some(path) = &args.cacert {
        match std::fs::read(path) {
            Ok(pem) => builder = builder.add_root_certificate_pem(&pem),
            Err(e) => {
                eprintln!("herald: cannot read --cacert {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let mut source = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };

    let mut printed: u64 = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let item = tokio::select! {
            item = source.next() => item,
            _ = &mut interrupted => {
                source.close();
                return ExitCode::from(130);
            }
        };
        match item {
            None => return ExitCode::SUCCESS,
            Some(Ok(ClientEvent::Message(event))) => {
                if let Err(e) = print_event(args.format, &event) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return ExitCode::SUCCESS;
                    }
                    eprintln!("herald: cannot write to stdout: {e}");
                    return ExitCode::FAILURE;
                }
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    source.close();
                    return ExitCode::SUCCESS;
                }
            }
            Some(Ok(ClientEvent::Open { url, version })) => {
                eprintln!("herald: connected to {url} ({version:?})");
            }
            Some(Ok(ClientEvent::Reconnecting { error, delay })) => {
                eprintln!(
                    "herald: {error}; reconnecting in {:.1} s",
                    delay.as_secs_f64()
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                report_failure(&args.url, &e);
                return ExitCode::FAILURE;
            }
        }
    }
}

fn report_failure(url: &str, error: &ClientError) {
    eprintln!("herald: {url}: {error}");
}

fn print_event(format: Format, event: &MessageEvent) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let line = JsonEvent {
                event_type: &event.event_type,
                data: &event.data,
                id: &event.last_event_id,
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        Format::Text => {
            writeln!(out, "event: {}", event.event_type)?;
            if !event.last_event_id.is_empty() {
                writeln!(out, "id: {}", event.last_event_id)?;
            }
            for line in event.data.split('\n') {
                writeln!(out, "data: {line}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::parse_header;

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header(": v").is_err());
    }
}

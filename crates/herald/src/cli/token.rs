//! `herald token`: mint a Mercure JWT (HS256) for publishers or subscribers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use herald_hub::auth::{mint_hs256, TokenSpec};

use super::keys;

/// Arguments of `herald token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// A selector the token may publish to (repeatable; `*` for all).
    #[arg(long = "publish", value_name = "SELECTOR")]
    publish: Vec<String>,
    /// A selector of private updates the token may receive (repeatable; `*` for all).
    #[arg(long = "subscribe", value_name = "SELECTOR")]
    subscribe: Vec<String>,
    /// The HS256 secret; default: the key `herald serve` keeps in --data-dir.
    #[arg(long, env = "HERALD_JWT_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Where `herald serve` keeps its generated key.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
    /// Lifetime, e.g. `1h` or `30days`; default: no expiry.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> ExitCode {
    if args.publish.is_empty() && args.subscribe.is_empty() {
        eprintln!(
            "herald: say what the token grants: --publish SELECTOR and/or --subscribe SELECTOR"
        );
        return ExitCode::from(2);
    }
    let key = match args.key {
        Some(k) => k,
        None => match keys::read_stored(&args.data_dir) {
            Ok(Some(k)) => k,
            Ok(None) => {
                eprintln!(
                    "herald: no key: pass --key, or run `herald serve` once so that it creates {}",
                    args.data_dir.join(keys::KEY_FILE).display()
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("herald: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let spec = TokenSpec {
        publish: (!args.publish.is_empty()).then_some(args.publish),
        subscribe: (!args.subscribe.is_empty()).then_some(args.subscribe),
        ttl_secs: args.ttl.map(|d| d.as_secs().max(1)),
    };
    match mint_hs256(key.as_bytes(), &spec) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::FAILURE
        }
    }
}

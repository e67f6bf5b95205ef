//! `herald serve`: run the hub. With no options it listens on 127.0.0.1:8080, keeps its log in
//! `./herald-data`, lets anonymous subscribers in (public updates only) and generates its JWT key
//! on first start, printing a ready publisher token and copy-paste examples.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use herald_http::server::{Server, ServerConfig, TlsFiles};
use herald_http::{router, HttpConfig, MERCURE_PATH};
use herald_hub::auth::{mint_hs256, TokenSpec, Verifier};
use herald_hub::log::memory::MemoryStore;
use herald_hub::log::redb::RedbStore;
use herald_hub::log::{Retention, Store};
use herald_hub::{Hub, HubConfig};

use super::keys::{self, KeyOrigin};

/// Arguments of `herald serve`. Every option also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the log (and the generated key) is kept.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
    /// `redb` (durable, in the data directory) or `memory` (nothing survives a restart).
    #[arg(long, env = "HERALD_STORE", value_enum, default_value_t = StoreKind::Redb)]
    store: StoreKind,
    /// Refuse subscribers without a token.
    #[arg(long, env = "HERALD_NO_ANONYMOUS")]
    no_anonymous: bool,
    /// HS256 secret for both publishers' and subscribers' tokens.
    #[arg(long, env = "HERALD_JWT_KEY", hide_env_values = true)]
    jwt_key: Option<String>,
    /// HS256 secret for publishers' tokens (overrides --jwt-key for them).
    #[arg(long, env = "HERALD_PUBLISHER_JWT_KEY", hide_env_values = true)]
    publisher_jwt_key: Option<String>,
    /// HS256 secret for subscribers' tokens (overrides --jwt-key for them).
    #[arg(long, env = "HERALD_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    subscriber_jwt_key: Option<String>,
    /// Send a `:` comment when a stream was idle this long.
    #[arg(long, env = "HERALD_HEARTBEAT", default_value = "40s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// End each stream after this long (clients reconnect and resume); `0s` for never.
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", default_value = "600s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// TLS certificate chain (PEM); with --tls-key, serves HTTPS with HTTP/2.
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Origins allowed to publish with a cookie-held token (repeatable).
    #[arg(
        long = "publish-origin",
        env = "HERALD_PUBLISH_ORIGINS",
        value_delimiter = ','
    )]
    publish_origins: Vec<String>,
    /// Most updates kept in history.
    #[arg(long, env = "HERALD_RETENTION_UPDATES", default_value_t = 1_000_000)]
    retention_updates: u64,
    /// Oldest update kept in history.
    #[arg(long, env = "HERALD_RETENTION_AGE", default_value = "7days", value_parser = humantime::parse_duration)]
    retention_age: Duration,
    /// Most bytes of updates kept in history.
    #[arg(long, env = "HERALD_RETENTION_BYTES", default_value_t = 1 << 30)]
    retention_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Redb,
    Memory,
}

/// Runs the hub until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herald: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redb => {
            std::fs::create_dir_all(&args.data_dir).map_err(|e| {
                format!(
                    "cannot create the data directory {}: {e}",
                    args.data_dir.display()
                )
            })?;
            let store =
                RedbStore::open(&args.data_dir.join("log.redb")).map_err(|e| e.to_string())?;
            Arc::new(store)
        }
    };

    let (default_key, origin) = match (&args.jwt_key, args.store) {
        (Some(k), _) => (k.clone(), KeyOrigin::Configured),
        (None, _) if args.publisher_jwt_key.is_some() && args.subscriber_jwt_key.is_some() => {
            (String::new(), KeyOrigin::Configured)
        }
        (None, StoreKind::Redb) => keys::load_or_create(&args.data_dir)?,
        (None, StoreKind::Memory) => (keys::generate(), KeyOrigin::Ephemeral),
    };
    let publisher_key = args
        .publisher_jwt_key
        .clone()
        .unwrap_or_else(|| default_key.clone());
    let subscriber_key = args
        .subscriber_jwt_key
        .clone()
        .unwrap_or_else(|| default_key.clone());

    let hub_config = HubConfig {
        retention: Retention {
            max_updates: Some(args.retention_updates),
            max_age: Some(args.retention_age),
            max_bytes: Some(args.retention_bytes),
        },
        ..HubConfig::default()
    };
    let hub = Hub::open(hub_config, store)
        .await
        .map_err(|e| e.to_string())?;
    let http = HttpConfig {
        publisher_key: Some(Verifier::hs256(publisher_key.as_bytes())),
        subscriber_key: Some(Verifier::hs256(subscriber_key.as_bytes())),
        anonymous: !args.no_anonymous,
        heartbeat: args.heartbeat,
        write_timeout: (!args.write_timeout.is_zero()).then_some(args.write_timeout),
        publish_origins: args.publish_origins.clone(),
        ..HttpConfig::default()
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let server = Server::bind(ServerConfig {
        listen: args.listen,
        tls,
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;

    print_banner(&args, &server, &publisher_key, &origin);

    let app = router(hub.clone(), http);
    let stopping = hub.clone();
    let shutdown = async move {
        wait_for_signal().await;
        eprintln!("herald: shutting down: finishing publishes, ending streams");
        stopping.shutdown().await;
    };
    server
        .serve(app, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("herald: stopped");
    Ok(())
}

fn print_banner(args: &ServeArgs, server: &Server, publisher_key: &str, origin: &KeyOrigin) {
    let scheme = if server.is_tls() { "https" } else { "http" };
    let hub_url = format!("{scheme}://{}{MERCURE_PATH}", server.local_addr());
    let store = match args.store {
        StoreKind::Redb => format!("redb in {}", args.data_dir.display()),
        StoreKind::Memory => "memory (history is lost on restart)".into(),
    };
    eprintln!("herald: hub listening on {hub_url}");
    eprintln!("herald: store: {store}");
    match origin {
        KeyOrigin::Configured => {}
        KeyOrigin::Stored(p) => eprintln!("herald: JWT key: {}", p.display()),
        KeyOrigin::Generated(p) => {
            eprintln!("herald: JWT key generated and kept in {}", p.display())
        }
        KeyOrigin::Ephemeral => {
            eprintln!("herald: JWT key generated for this run only (--store memory)")
        }
    }
    if *origin == KeyOrigin::Configured {
        return;
    }
    let spec = TokenSpec {
        publish: Some(vec!["*".into()]),
        subscribe: None,
        ttl_secs: None,
    };
    if let Ok(token) = mint_hs256(publisher_key.as_bytes(), &spec) {
        eprintln!();
        eprintln!("Publisher token (may publish to every topic):");
        eprintln!("  {token}");
        eprintln!();
        eprintln!("Subscribe:");
        eprintln!("  curl -N '{hub_url}?topic=https://example.com/books/1'");
        eprintln!("Publish:");
        eprintln!("  curl -X POST '{hub_url}' -H 'Authorization: Bearer {token}' \\");
        eprintln!("    -d topic=https://example.com/books/1 -d 'data={{\"title\":\"Dune\"}}'");
        eprintln!();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

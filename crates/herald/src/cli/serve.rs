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
use herald_hub::auth::{mint_hs256, KeyAlgorithm, TokenSpec, Verifier};
use herald_hub::log::memory::MemoryStore;
use herald_hub::log::redb::RedbStore;
use herald_hub::log::redis::RedisStore;
use herald_hub::log::{Retention, Store};
use herald_hub::{Hub, HubConfig};

use super::demo;
use super::keys::{self, KeyOrigin};

/// Arguments of `herald serve`. Every option also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML file with any of these options (keys are the long option names); flags and
    /// environment variables override it.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Announce subscriptions as private updates on /.well-known/mercure/subscriptions/… and
    /// serve the subscriptions API.
    #[arg(long, env = "HERALD_SUBSCRIPTIONS")]
    subscriptions: bool,
    /// Log format: `human` (default) or `json` (one object per line).
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// What to log: a level (`info`, `debug`, …) or directives like `herald_hub=debug,info`.
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    log: String,
    /// Address to listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the log (and the generated key) is kept.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
    /// `redb` (durable, in the data directory), `memory` (nothing survives a restart), or a
    /// `redis://host:port/db` URL: several nodes on one Redis share one log (`rediss://`, Redis
    /// over TLS, is not supported by this build).
    #[arg(long, env = "HERALD_STORE", default_value = "redb", value_parser = StoreKind::parse)]
    store: StoreKind,
    /// Prefix of the Redis keys (`PREFIX:log`, `PREFIX:seq`, …); nodes with the same Redis and
    /// prefix form one cluster.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    redis_prefix: String,
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
    /// Algorithm of --jwt-key: HS256/384/512 (the key is a secret) or RS*/PS*/ES256/ES384/EdDSA
    /// (the key is a PEM public key, or the path of a PEM file).
    #[arg(long, env = "HERALD_JWT_ALG", default_value = "HS256")]
    jwt_alg: KeyAlgorithm,
    /// Algorithm of the publishers' key (default: --jwt-alg).
    #[arg(long, env = "HERALD_PUBLISHER_JWT_ALG")]
    publisher_jwt_alg: Option<KeyAlgorithm>,
    /// Algorithm of the subscribers' key (default: --jwt-alg).
    #[arg(long, env = "HERALD_SUBSCRIBER_JWT_ALG")]
    subscriber_jwt_alg: Option<KeyAlgorithm>,
    /// Name of the cookie that may carry the token.
    #[arg(
        long,
        env = "HERALD_COOKIE_NAME",
        default_value = "mercureAuthorization"
    )]
    cookie_name: String,
    /// Origin allowed to use the hub from a browser on another origin, with credentials
    /// (repeatable; `*` for any origin, without credentials).
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// Largest publish request body in bytes (413 beyond).
    #[arg(long, env = "HERALD_MAX_BODY", default_value_t = 2 << 20)]
    max_body: usize,
    /// Largest `data` of one update in bytes (413 beyond).
    #[arg(long, env = "HERALD_MAX_DATA", default_value_t = 1 << 20)]
    max_data: usize,
    /// Most topics per publish and selectors per subscription (400 beyond).
    #[arg(long, env = "HERALD_MAX_TOPICS", default_value_t = 1000)]
    max_topics: usize,
    /// Most open subscriber streams (503 beyond); 0 for no limit.
    #[arg(long, env = "HERALD_MAX_SUBSCRIBERS", default_value_t = 100_000)]
    max_subscribers: usize,
    /// Most open subscriber streams per client address (429 beyond); 0 for no limit.
    #[arg(long, env = "HERALD_MAX_SUBSCRIBERS_PER_IP", default_value_t = 10_000)]
    max_subscribers_per_ip: usize,
    /// Time a client has to send its request head (slower ones are cut).
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// On SIGTERM/SIGINT, how long connections may take to finish before they are cut.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Threads that write the event streams of HTTP/1.1 subscribers (apart from the threads
    /// that serve requests); 0 for one per CPU.
    #[arg(long, env = "HERALD_STREAM_THREADS", default_value_t = 0)]
    stream_threads: usize,
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
    /// Feed the demo pages at /demos/ from a publisher inside the hub (and accept the chat
    /// demo's messages at /demos/chat/messages).
    #[arg(long, env = "HERALD_DEMO")]
    demo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Sends `tracing` events to stderr in the chosen format.
fn init_logs(format: LogFormat, directives: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .map_err(|e| format!("invalid --log {directives:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (e.g. in tests running serve twice): keep the first.
    let _ = installed;
    Ok(())
}

/// Where the log lives (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreKind {
    Redb,
    Memory,
    /// A `redis://` URL.
    Redis(String),
}

impl StoreKind {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "redb" => Ok(Self::Redb),
            "memory" => Ok(Self::Memory),
            url if url.starts_with("redis://") => Ok(Self::Redis(url.to_owned())),
            url if url.starts_with("rediss://") => Err(
                "rediss:// (Redis over TLS) is not supported by this build: use redis:// \
                 on a private network, or a TLS tunnel such as stunnel to Redis"
                    .to_owned(),
            ),
            other => Err(format!(
                "{other:?} is not a store: use redb, memory or a redis://host:port/db URL"
            )),
        }
    }
}

/// A Redis URL without its password, for the banner.
fn redis_display(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
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
    init_logs(args.log_format, &args.log)?;
    let store: Arc<dyn Store> = match &args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redis(url) => {
            Arc::new(RedisStore::open(url, &args.redis_prefix).map_err(|e| e.to_string())?)
        }
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

    let (default_key, origin) = match (&args.jwt_key, &args.store) {
        (Some(k), _) => (k.clone(), KeyOrigin::Configured),
        (None, _) if args.publisher_jwt_key.is_some() && args.subscriber_jwt_key.is_some() => {
            (String::new(), KeyOrigin::Configured)
        }
        (None, StoreKind::Redb) => keys::load_or_create(&args.data_dir)?,
        (None, StoreKind::Redis(_)) => {
            // Every node needs the same key: a generated one only suits a single node.
            eprintln!(
                "herald: warning: with --store redis every node needs the same --jwt-key; \
                 the key in {} works on this node only",
                args.data_dir.display()
            );
            std::fs::create_dir_all(&args.data_dir).map_err(|e| {
                format!(
                    "cannot create the data directory {}: {e}",
                    args.data_dir.display()
                )
            })?;
            keys::load_or_create(&args.data_dir)?
        }
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

    let publisher_alg = args.publisher_jwt_alg.unwrap_or(args.jwt_alg);
    let subscriber_alg = args.subscriber_jwt_alg.unwrap_or(args.jwt_alg);
    let publisher_verifier = verifier(publisher_alg, &publisher_key, "publisher")?;
    let subscriber_verifier = verifier(subscriber_alg, &subscriber_key, "subscriber")?;

    let hub_config = HubConfig {
        retention: Retention {
            max_updates: Some(args.retention_updates),
            max_age: Some(args.retention_age),
            max_bytes: Some(args.retention_bytes),
        },
        subscription_events: args.subscriptions,
        ..HubConfig::default()
    };
    let hub = Hub::open(hub_config, store)
        .await
        .map_err(|e| e.to_string())?;
    let http = HttpConfig {
        publisher_key: Some(publisher_verifier),
        subscriber_key: Some(subscriber_verifier),
        anonymous: !args.no_anonymous,
        heartbeat: args.heartbeat,
        write_timeout: (!args.write_timeout.is_zero()).then_some(args.write_timeout),
        cookie_name: args.cookie_name.clone(),
        publish_origins: args.publish_origins.clone(),
        max_body_bytes: args.max_body,
        max_data_bytes: args.max_data,
        max_topics: args.max_topics,
        max_subscribers: args.max_subscribers,
        max_subscribers_per_ip: args.max_subscribers_per_ip,
        cors_origins: args.cors_origins.clone(),
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
        header_read_timeout: args.header_timeout,
        shutdown_grace: args.shutdown_grace,
        stream_threads: args.stream_threads,
        ..ServerConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;

    let printable_key = publisher_alg.is_hmac().then_some(publisher_key.as_str());
    print_banner(&args, &server, printable_key, &origin);

    let app = router(hub.clone(), http);
    let base = format!(
        "{}://{}",
        if server.is_tls() { "https" } else { "http" },
        server.local_addr()
    );
    eprintln!("herald: UI: {base}/");
    let app = if args.demo {
        demo::spawn(&hub);
        eprintln!("herald: demos: {base}/demos/");
        app.merge(herald_http::demo::router(hub.clone()))
    } else {
        app
    };
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

/// A verifier for `key`: the secret itself for HMAC, else PEM text or the path of a PEM file.
fn verifier(alg: KeyAlgorithm, key: &str, whose: &str) -> Result<Verifier, String> {
    let material = if alg.is_hmac() || key.trim_start().starts_with("-----BEGIN") {
        key.as_bytes().to_vec()
    } else {
        std::fs::read(key).map_err(|e| {
            format!("cannot read the {whose} public key file {key:?} (for {alg:?}): {e}")
        })?
    };
    Verifier::new(alg, &material).map_err(|e| format!("{whose} key: {e}"))
}

fn print_banner(
    args: &ServeArgs,
    server: &Server,
    publisher_key: Option<&str>,
    origin: &KeyOrigin,
) {
    let scheme = if server.is_tls() { "https" } else { "http" };
    let hub_url = format!("{scheme}://{}{MERCURE_PATH}", server.local_addr());
    let store = match &args.store {
        StoreKind::Redb => format!("redb in {}", args.data_dir.display()),
        StoreKind::Memory => "memory (history is lost on restart)".into(),
        StoreKind::Redis(url) => format!(
            "redis at {} (keys {}:*)",
            redis_display(url),
            args.redis_prefix
        ),
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
    let Some(publisher_key) = publisher_key.filter(|_| *origin != KeyOrigin::Configured) else {
        return;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_kinds() {
        assert!(matches!(StoreKind::parse("redb"), Ok(StoreKind::Redb)));
        assert!(matches!(StoreKind::parse("memory"), Ok(StoreKind::Memory)));
        assert!(matches!(
            StoreKind::parse("redis://127.0.0.1:6379/0"),
            Ok(StoreKind::Redis(url)) if url == "redis://127.0.0.1:6379/0"
        ));
        let tls = StoreKind::parse("rediss://example.com:6380/0").unwrap_err();
        assert!(tls.contains("not supported"), "{tls}");
        assert!(StoreKind::parse("postgres://x").is_err());
    }
}

//! `herald publish`: POST one update to a hub and print its id.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use herald_hub::auth::{mint_hs256, TokenSpec};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::keys;

/// Arguments of `herald publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The hub's Mercure endpoint.
    #[arg(
        long,
        env = "HERALD_HUB",
        default_value = "http://127.0.0.1:8080/.well-known/mercure"
    )]
    hub: String,
    /// Topic (repeatable: the first is canonical, the others alternates).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// The payload.
    #[arg(long, default_value = "")]
    data: String,
    /// The update's id (default: the hub generates one).
    #[arg(long)]
    id: Option<String>,
    /// The SSE event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The reconnection time subscribers should use, in milliseconds.
    #[arg(long)]
    retry: Option<u64>,
    /// Only subscribers allowed by their token receive it.
    #[arg(long)]
    private: bool,
    /// Publisher JWT; default: one minted from the key in --data-dir.
    #[arg(long, env = "HERALD_JWT", hide_env_values = true)]
    jwt: Option<String>,
    /// Where `herald serve` keeps its key (used when --jwt is not given).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    data_dir: PathBuf,
}

/// Publishes and prints the id the hub answered.
pub async fn run(args: PublishArgs) -> ExitCode {
    match publish(args).await {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("herald: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn publish(args: PublishArgs) -> Result<String, String> {
    let token = match &args.jwt {
        Some(t) => t.clone(),
        None => {
            let key = keys::read_stored(&args.data_dir)?.ok_or_else(|| {
                format!(
                    "no publisher token: pass --jwt, or run where {} exists",
                    args.data_dir.join(keys::KEY_FILE).display()
                )
            })?;
            let spec = TokenSpec {
                publish: Some(args.topics.clone()),
                subscribe: None,
                ttl_secs: Some(60),
            };
            mint_hs256(key.as_bytes(), &spec).map_err(|e| e.to_string())?
        }
    };
    let mut form = form_urlencoded_body(&args);
    form.shrink_to_fit();

    let uri: http::Uri = args
        .hub
        .parse()
        .map_err(|e| format!("invalid --hub URL {:?}: {e}", args.hub))?;
    let request = http::Request::post(uri)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| format!("cannot build the request: {e}"))?;

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.hub))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if status == http::StatusCode::OK {
        Ok(text)
    } else {
        Err(format!("the hub answered {status}: {text}"))
    }
}

fn form_urlencoded_body(args: &PublishArgs) -> String {
    let mut fields: Vec<(&str, String)> =
        args.topics.iter().map(|t| ("topic", t.clone())).collect();
    fields.push(("data", args.data.clone()));
    if let Some(id) = &args.id {
        fields.push(("id", id.clone()));
    }
    if let Some(t) = &args.event_type {
        fields.push(("type", t.clone()));
    }
    if let Some(r) = args.retry {
        fields.push(("retry", r.to_string()));
    }
    if args.private {
        fields.push(("private", "on".into()));
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

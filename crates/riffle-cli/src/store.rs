//! `riffle store`: the embedded event store as a process of its own. `serve` opens the store
//! on a directory and answers its HTTP/JSON API (see `riffle_store_server`) until SIGINT or
//! SIGTERM, after which it finishes the appends in flight and exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use riffle_core::{Error, Result};
use riffle_eventstore::EventStore;
use riffle_store_server::ServerOptions;

/// The `riffle store` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Serve an event store over HTTP/JSON (appends, reads, SSE subscriptions).
    Serve(ServeArgs),
}

/// Arguments of `riffle store serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The store's directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// The address to listen on, HOST:PORT (port 0: any free port; the address taken is
    /// printed on stderr).
    #[arg(long, default_value = "127.0.0.1:2113")]
    listen: String,
    /// Require `Authorization: Bearer <TOKEN>` on every request but /healthz.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Like --token, the token read from this file (surrounding whitespace removed), so that
    /// it does not show in the process list.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = riffle_store_server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Seconds between the heartbeats (SSE comments) of an idle subscription.
    #[arg(long, default_value_t = 15)]
    heartbeat_secs: u64,
}

/// Runs a `riffle store` subcommand.
pub fn run(cmd: StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let token = read_token(&args.token, &args.token_file)?;
    if args.max_body_bytes == 0 {
        return Err(Error::Config("--max-body-bytes must be at least 1".into()));
    }
    if args.heartbeat_secs == 0 {
        return Err(Error::Config("--heartbeat-secs must be at least 1".into()));
    }
    let options = ServerOptions {
        token,
        max_body_bytes: args.max_body_bytes,
        heartbeat: std::time::Duration::from_secs(args.heartbeat_secs),
    };
    let store = EventStore::open(&args.data)
        .map_err(|e| Error::Execution(format!("cannot open the event store {}: {e}", args.data.display())))?;
    serve_http(
        "event store",
        &args.data,
        &args.listen,
        |listener, address| async move {
            riffle_store_server::serve(store, listener, options, riffle_store_server::shutdown_signal())
                .await
                .map_err(|source| Error::Network {
                    what: "serving the event store failed on",
                    address: address.to_string(),
                    source,
                })
        },
    )
}

/// The bearer token of `--token`, or of `--token-file` (surrounding whitespace removed); an
/// empty one is refused. Shared with `riffle example bank serve`.
pub(crate) fn read_token(token: &Option<String>, token_file: &Option<PathBuf>) -> Result<Option<String>> {
    let token = match (token, token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| Error::Io {
                    what: "cannot read the token file",
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err(Error::Config("the token is empty".into()));
    }
    Ok(token)
}

/// Runs an HTTP server of `what` (on the data in `data`) on a tokio runtime of its own: binds
/// `listen`, prints the address taken, runs `serve` with the listener until it returns (on
/// SIGINT/SIGTERM), then prints that it stopped. Shared with `riffle example bank serve`.
pub(crate) fn serve_http<F, Fut>(what: &str, data: &Path, listen: &str, serve: F) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("riffle-http")
        .build()
        .map_err(|source| Error::Io {
            what: "cannot start the HTTP runtime for",
            path: data.to_path_buf(),
            source,
        })?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Network {
                what: "cannot listen on",
                address: listen.to_string(),
                source,
            })?;
        let address: SocketAddr = listener.local_addr().map_err(|source| Error::Network {
            what: "cannot read the address of",
            address: listen.to_string(),
            source,
        })?;
        eprintln!("riffle: {what} {} listening on http://{address}", data.display());
        serve(listener, address).await
    })?;
    eprintln!("riffle: {what} {} stopped", data.display());
    Ok(())
}

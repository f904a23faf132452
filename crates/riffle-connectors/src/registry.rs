//! The registry of connectors: which implementation a URI scheme names.
//!
//! Sources and sinks are found by the scheme of their URI (`socket://`, `kafka://`, …). The
//! built-in connectors are listed in [`builtin_sources`] and [`builtin_sinks`]; a connector
//! is one module that implements [`Source`] or [`Sink`] and one line
//! there. A program that embeds Riffle can add its own with [`register_source`] and
//! [`register_sink`] before it parses URIs.
//!
//! ```
//! use riffle_connectors::registry::{register_source, SourceScheme};
//! use riffle_connectors::{FileSource, SourceUri};
//! // A scheme of one's own: `logs://NAME` reads /var/log/NAME.
//! register_source(SourceScheme {
//!     scheme: "logs",
//!     usage: "logs://NAME",
//!     open: |uri| {
//!         let name = uri.trim_start_matches("logs://");
//!         Ok(std::sync::Arc::new(FileSource::new(format!("/var/log/{name}"))))
//!     },
//! });
//! assert!(SourceUri::parse("logs://syslog").is_ok());
//! assert!(SourceUri::parse("ftp://host/x").unwrap_err().to_string().contains("logs://NAME"));
//! ```

use std::sync::{Arc, OnceLock, RwLock};

use riffle_core::{Error, Result};

use crate::sink::Sink;
use crate::source::Source;

/// Builds a source from its whole URI (scheme included).
pub type SourceFactory = fn(&str) -> Result<Arc<dyn Source>>;

/// Builds a sink from its whole URI (scheme included).
pub type SinkFactory = fn(&str) -> Result<Arc<dyn Sink>>;

/// A source connector's entry: its scheme, how its URI is written (for errors), its factory.
#[derive(Clone, Copy)]
pub struct SourceScheme {
    /// The scheme, without `://`.
    pub scheme: &'static str,
    /// The URI's shape, for the error that lists what is known (`socket://HOST:PORT`).
    pub usage: &'static str,
    /// Parses a URI of this scheme.
    pub open: SourceFactory,
}

/// A sink connector's entry.
#[derive(Clone, Copy)]
pub struct SinkScheme {
    /// The scheme, without `://`.
    pub scheme: &'static str,
    /// The URI's shape, for errors (`file://DIR`).
    pub usage: &'static str,
    /// Parses a URI of this scheme.
    pub open: SinkFactory,
}

/// The source connectors built into Riffle.
pub fn builtin_sources() -> Vec<SourceScheme> {
    let mut sources = vec![
        SourceScheme {
            scheme: "socket",
            usage: "socket://HOST:PORT",
            open: |uri| Ok(Arc::new(crate::socket::SocketSource::parse(uri)?)),
        },
        SourceScheme {
            scheme: "file",
            usage: "file://PATH",
            open: |uri| Ok(Arc::new(crate::file::FileSource::parse(uri)?)),
        },
        SourceScheme {
            scheme: "stdin",
            usage: "- for stdin",
            open: |_| Ok(Arc::new(crate::stdin::StdinSource)),
        },
    ];
    #[cfg(feature = "kafka")]
    sources.push(SourceScheme {
        scheme: "kafka",
        usage: "kafka://HOST:PORT/TOPIC",
        open: |uri| {
            let uri = crate::kafka::KafkaUri::parse(uri)?;
            Ok(Arc::new(crate::kafka::KafkaSourceSpec::new(uri)?))
        },
    });
    sources.push(SourceScheme {
        scheme: "store",
        usage: "store://DIR[?from=P][&category=C | &stream=S][&follow=true|false]",
        open: |uri| Ok(Arc::new(crate::eventstore::StoreSource::parse(uri)?)),
    });
    sources.push(SourceScheme {
        scheme: "store+http",
        usage: "store+http://HOST:PORT/all|categories/C|streams/S[?from=P][&token=T]",
        open: |uri| Ok(Arc::new(crate::eventstore_http::RemoteStoreSource::parse(uri)?)),
    });
    sources.push(SourceScheme {
        scheme: "generate",
        usage: "generate://words?...",
        open: |uri| {
            let spec = uri.strip_prefix("generate://").unwrap_or(uri);
            Ok(Arc::new(crate::generator::WordGenerator::parse(spec)?))
        },
    });
    sources
}

/// The sink connectors built into Riffle.
pub fn builtin_sinks() -> Vec<SinkScheme> {
    let mut sinks = vec![SinkScheme {
        scheme: "file",
        usage: "file://DIR",
        open: |uri| Ok(Arc::new(crate::file_sink::CommittedFileSink::parse(uri)?)),
    }];
    #[cfg(feature = "kafka")]
    sinks.push(SinkScheme {
        scheme: "kafka",
        usage: "kafka://HOST:PORT/TOPIC",
        open: |uri| Ok(Arc::new(crate::kafka::KafkaSink::parse(uri)?)),
    });
    sinks.push(SinkScheme {
        scheme: "table",
        usage: "table://PATH",
        open: |uri| Ok(Arc::new(crate::readmodel::ReadModelSink::parse(uri)?)),
    });
    sinks.push(SinkScheme {
        scheme: "blackhole",
        usage: "blackhole://",
        open: |_| Ok(Arc::new(crate::sink::BlackholeSink)),
    });
    sinks
}

fn sources() -> &'static RwLock<Vec<SourceScheme>> {
    static SOURCES: OnceLock<RwLock<Vec<SourceScheme>>> = OnceLock::new();
    SOURCES.get_or_init(|| RwLock::new(builtin_sources()))
}

fn sinks() -> &'static RwLock<Vec<SinkScheme>> {
    static SINKS: OnceLock<RwLock<Vec<SinkScheme>>> = OnceLock::new();
    SINKS.get_or_init(|| RwLock::new(builtin_sinks()))
}

/// Adds a source connector (replacing one of the same scheme).
pub fn register_source(entry: SourceScheme) {
    let mut all = sources().write().unwrap_or_else(|p| p.into_inner());
    all.retain(|s| s.scheme != entry.scheme);
    all.push(entry);
}

/// Adds a sink connector (replacing one of the same scheme).
pub fn register_sink(entry: SinkScheme) {
    let mut all = sinks().write().unwrap_or_else(|p| p.into_inner());
    all.retain(|s| s.scheme != entry.scheme);
    all.push(entry);
}

/// `a, b, or c`.
fn list(usages: &[&str]) -> String {
    match usages.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{}, or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

/// What a registry entry has: its scheme and usage.
trait Entry: Copy {
    fn scheme(&self) -> &'static str;
    fn usage(&self) -> &'static str;
}

impl Entry for SourceScheme {
    fn scheme(&self) -> &'static str {
        self.scheme
    }
    fn usage(&self) -> &'static str {
        self.usage
    }
}

impl Entry for SinkScheme {
    fn scheme(&self) -> &'static str {
        self.scheme
    }
    fn usage(&self) -> &'static str {
        self.usage
    }
}

/// The entry of `scheme` in `registry`, or every usage it knows (for the error).
fn find<E: Entry>(registry: &RwLock<Vec<E>>, scheme: Option<&str>) -> std::result::Result<E, String> {
    let all = registry.read().unwrap_or_else(|p| p.into_inner());
    scheme
        .and_then(|s| all.iter().find(|e| e.scheme() == s).copied())
        .ok_or_else(|| list(&all.iter().map(|e| e.usage()).collect::<Vec<_>>()))
}

/// The source a URI names: its scheme's connector; `-` and `stdin:` are standard input, and a
/// bare path (no `scheme://`) a file or folder, as `nexmark run --input` takes it.
pub fn open_source(uri: &str) -> Result<Arc<dyn Source>> {
    let uri = match uri {
        "-" | "stdin:" => "stdin://",
        other => other,
    };
    let scheme = match uri.split_once("://") {
        Some((scheme, _)) => Some(scheme),
        None if !uri.is_empty() => Some("file"),
        None => None,
    };
    match find(sources(), scheme) {
        Ok(entry) => (entry.open)(uri),
        Err(known) => Err(Error::Config(format!("source '{uri}': unknown scheme (use {known})"))),
    }
}

/// The sink a URI names, by its scheme's connector.
pub fn open_sink(uri: &str) -> Result<Arc<dyn Sink>> {
    let uri = match uri {
        "blackhole:" => "blackhole://",
        other => other,
    };
    match find(sinks(), uri.split_once("://").map(|(s, _)| s)) {
        Ok(entry) => (entry.open)(uri),
        Err(known) => Err(Error::Config(format!("--sink: expected {known}, got '{uri}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unknown_scheme_error_lists_every_source() {
        let err = open_source("ftp://x").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("socket://HOST:PORT, file://PATH, - for stdin"), "{err}");
        assert!(err.contains("or generate://words?..."), "{err}");
    }

    #[test]
    fn bare_paths_and_dashes() {
        assert_eq!(
            open_source("words.txt").map(|s| s.name()).ok(),
            Some("words.txt".into())
        );
        assert_eq!(open_source("-").map(|s| s.name()).ok(), Some("stdin".into()));
        assert!(open_source("").is_err());
        assert!(open_source("socket://nohost").is_err());
    }

    #[test]
    fn a_registered_sink_is_found_by_its_scheme_and_listed_in_errors() {
        register_sink(SinkScheme {
            scheme: "test-null",
            usage: "test-null://",
            open: |_| Ok(Arc::new(crate::sink::BlackholeSink)),
        });
        assert_eq!(
            open_sink("test-null://x").map(|s| s.name()).ok(),
            Some("blackhole".into())
        );
        let err = open_sink("nope://").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("file://DIR") && err.contains("test-null://"), "{err}");
        assert!(open_sink("blackhole:").is_ok());
    }
}

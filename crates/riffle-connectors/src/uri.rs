//! Source URIs and their splits.

use std::path::PathBuf;

use riffle_core::{Error, Result};

use crate::generator::WordGenerator;

/// Where a text source reads from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceUri {
    /// `socket://HOST:PORT`: connect as a client and read lines (Flink's `socketTextStream`).
    Socket(String),
    /// `file://PATH`: a file, or every file of a folder (sorted by name).
    Files(PathBuf),
    /// `-` or `stdin://`: standard input.
    Stdin,
    /// `generate://words?...`: generated word lines (for tests and benchmarks).
    Generator(WordGenerator),
    /// `kafka://HOST:PORT/TOPIC?group.id=G&...`: a Kafka topic, one split per partition.
    Kafka(std::sync::Arc<crate::kafka::KafkaSourceSpec>),
}

impl SourceUri {
    /// A Kafka topic (see [`KafkaUri::new`](crate::kafka::KafkaUri::new) for the builder).
    pub fn kafka(uri: crate::kafka::KafkaUri) -> Result<SourceUri> {
        let spec = crate::kafka::KafkaSourceSpec::new(uri)?;
        Ok(SourceUri::Kafka(std::sync::Arc::new(spec)))
    }

    /// Parses `socket://HOST:PORT`, `file://PATH`, `-`, `stdin://`, `kafka://HOST:PORT/TOPIC?…` or
    /// `generate://words?lines=N&words=W&vocabulary=V&seed=S&disorder=MS&step=MS&rate=LINES_PER_S`.
    /// A bare path without a scheme (`words.txt`, `/data/in`) means `file://` that path.
    ///
    /// ```
    /// use riffle_connectors::SourceUri;
    /// assert_eq!(SourceUri::parse("words.txt").unwrap(), SourceUri::Files("words.txt".into()));
    /// assert_eq!(SourceUri::parse("-").unwrap(), SourceUri::Stdin);
    /// assert!(SourceUri::parse("ftp://host/words.txt").is_err());
    /// ```
    pub fn parse(uri: &str) -> Result<SourceUri> {
        if uri == "-" || uri == "stdin://" || uri == "stdin:" {
            return Ok(SourceUri::Stdin);
        }
        if let Some(addr) = uri.strip_prefix("socket://") {
            if addr.is_empty() || !addr.contains(':') {
                return Err(Error::Config(format!("source '{uri}': expected socket://HOST:PORT")));
            }
            return Ok(SourceUri::Socket(addr.trim_end_matches('/').to_string()));
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::Config(format!("source '{uri}': expected file://PATH")));
            }
            return Ok(SourceUri::Files(PathBuf::from(path)));
        }
        if let Some(spec) = uri.strip_prefix("generate://") {
            return WordGenerator::parse(spec).map(SourceUri::Generator);
        }
        if uri.starts_with("kafka://") {
            return SourceUri::kafka(crate::kafka::KafkaUri::parse(uri)?);
        }
        // A bare path (no `scheme://`) means a file or folder, as `nexmark run --input` takes
        // it; something that looks like another scheme (`ftp://x`) stays an error.
        if !uri.is_empty() && !uri.contains("://") {
            return Ok(SourceUri::Files(PathBuf::from(uri)));
        }
        Err(Error::Config(format!(
            "source '{uri}': unknown scheme (use socket://HOST:PORT, file://PATH, - for stdin, kafka://HOST:PORT/TOPIC, or generate://words?...)"
        )))
    }

    /// The splits of this source. Fails if a file or folder does not exist or cannot be
    /// listed; the error names it.
    pub fn splits(&self) -> Result<Vec<SplitSpec>> {
        match self {
            SourceUri::Socket(a) => Ok(vec![SplitSpec::Socket(a.clone())]),
            SourceUri::Stdin => Ok(vec![SplitSpec::Stdin]),
            SourceUri::Generator(g) => Ok(vec![SplitSpec::Generator(g.clone())]),
            SourceUri::Kafka(k) => Ok(k.partitions()?.into_iter().map(SplitSpec::Kafka).collect()),
            SourceUri::Files(path) => {
                let meta = std::fs::metadata(path).map_err(|source| Error::Io {
                    what: "cannot open",
                    path: path.clone(),
                    source,
                })?;
                if meta.is_dir() {
                    let mut files = Vec::new();
                    let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
                        what: "cannot list",
                        path: path.clone(),
                        source,
                    })?;
                    for entry in entries {
                        let entry = entry.map_err(|source| Error::Io {
                            what: "cannot list",
                            path: path.clone(),
                            source,
                        })?;
                        let p = entry.path();
                        let name = entry.file_name();
                        if p.is_file() && !name.to_string_lossy().starts_with('.') {
                            files.push(p);
                        }
                    }
                    files.sort();
                    Ok(files.into_iter().map(SplitSpec::File).collect())
                } else {
                    Ok(vec![SplitSpec::File(path.clone())])
                }
            }
        }
    }
}

/// One independently read part of a source.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitSpec {
    /// A file.
    File(PathBuf),
    /// A TCP server to connect to.
    Socket(String),
    /// Standard input.
    Stdin,
    /// Generated lines.
    Generator(WordGenerator),
    /// A partition of a Kafka topic.
    Kafka(crate::kafka::KafkaPartitionSpec),
}

impl SplitSpec {
    /// A name for messages: the path, the address, `stdin`, `generator`.
    pub fn name(&self) -> String {
        match self {
            SplitSpec::File(p) => p.display().to_string(),
            SplitSpec::Socket(a) => format!("socket://{a}"),
            SplitSpec::Stdin => "stdin".into(),
            SplitSpec::Generator(_) => "generator".into(),
            SplitSpec::Kafka(p) => p.name(),
        }
    }

    /// Whether the split ends by itself (a file, generated data). Sockets and stdin end when
    /// the peer closes them; a Kafka partition when it is bounded.
    pub fn is_bounded_by_nature(&self) -> bool {
        match self {
            SplitSpec::File(_) | SplitSpec::Generator(_) => true,
            SplitSpec::Kafka(p) => p.end.is_some(),
            SplitSpec::Socket(_) | SplitSpec::Stdin => false,
        }
    }

    /// Whether the split can be read again from a checkpointed position (files, generated
    /// data, Kafka partitions; not sockets or stdin).
    pub fn is_replayable(&self) -> bool {
        !matches!(self, SplitSpec::Socket(_) | SplitSpec::Stdin)
    }
}

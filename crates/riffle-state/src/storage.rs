//! Where checkpoint files live: a directory (local, or a shared filesystem) or an object store
//! (`s3://bucket/prefix`, so that the processes of a job on different machines share their
//! checkpoints without a shared filesystem). The store, the fence and savepoints read and write
//! through [`Storage`], by paths relative to the checkpoint location
//! (`chk-0000000007/MANIFEST`).
//!
//! What the checkpoint protocol needs of a storage is small, and both kinds give it: a file is
//! written whole or not at all (a temporary file synced and renamed on a filesystem; a single
//! PUT on an object store, which never shows half an object), and a checkpoint is complete once
//! its manifest exists, written last. Nothing relies on renaming a directory or listing being
//! atomic: S3 has neither.
//!
//! Object storage goes through the `object_store` crate (Apache Arrow's, used by DataFusion,
//! Arroyo and InfluxDB), which speaks S3 and S3-compatible servers (MinIO, s3s-fs, R2). The
//! endpoint, region and credentials come from the usual AWS variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`); the endpoint
//! and region also from the URI's parameters: `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1`
//! (`endpoint`, `region`, `allow_http`). Credentials are never taken from the URI: it shows in
//! process listings, logs and error messages. Its calls are
//! asynchronous; the store makes them on a runtime of its own and waits, as the checkpoint code
//! is synchronous and runs on timely's worker threads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use riffle_core::{Error, Result};

/// The checkpoint files of one job, by path relative to its location.
pub(crate) trait Storage: Send + Sync {
    /// The directory, when the storage is one (the lock of `crate::fence` needs a file).
    fn local_dir(&self) -> Option<&Path>;
    /// Writes `rel` whole: a reader sees all of it or nothing (what was there before).
    fn put_with(&self, rel: &str, fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<()>;
    /// Writes `bytes` to `rel` whole.
    fn put(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.put_with(rel, &mut |w| w.write_all(bytes))
    }
    /// Reads `rel`; `None` if it does not exist.
    fn get(&self, rel: &str) -> Result<Option<Vec<u8>>>;
    /// Whether `rel` exists.
    fn exists(&self, rel: &str) -> Result<bool>;
    /// The size of `rel` in bytes.
    fn size(&self, rel: &str) -> Result<u64>;
    /// The names of the directories directly under the location (none if it does not exist).
    fn list_dirs(&self) -> Result<Vec<String>>;
    /// The names of the files directly under `dir` (none if it does not exist).
    fn list_files(&self, dir: &str) -> Result<Vec<String>>;
    /// Removes `dir` and everything under it.
    fn remove_dir(&self, dir: &str) -> Result<()>;
    /// Makes sure the location exists (a directory is created; a bucket must exist already).
    fn create(&self) -> Result<()>;
    /// `rel` as a user would write it, for messages.
    fn show(&self, rel: &str) -> PathBuf;
}

/// The storage of checkpoint location `location`: `s3://…` or a directory.
pub(crate) fn open(location: &Path) -> Result<Arc<dyn Storage>> {
    let text = location.to_string_lossy();
    if text.starts_with("s3://") {
        #[cfg(feature = "object-storage")]
        return Ok(Arc::new(object::ObjectStorage::open(&text)?));
        #[cfg(not(feature = "object-storage"))]
        return Err(Error::Config(format!(
            "checkpoint location {text}: this riffle was built without object storage (cargo feature 'object-storage' of riffle-state)"
        )));
    }
    if text.contains("://") {
        return Err(Error::Config(format!(
            "checkpoint location {text}: a directory or s3://bucket/prefix is expected"
        )));
    }
    Ok(Arc::new(LocalStorage {
        root: location.to_path_buf(),
    }))
}

/// Whether `location` names object storage (no lock file, no local directory).
pub fn is_object_storage(location: &Path) -> bool {
    location.to_string_lossy().starts_with("s3://")
}

/// A directory.
pub(crate) struct LocalStorage {
    root: PathBuf,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl Storage for LocalStorage {
    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn put_with(&self, rel: &str, fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        crate::format::write_atomically_with(&path, |f| fill(f))
    }

    fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", &path)(e)),
        }
    }

    fn exists(&self, rel: &str) -> Result<bool> {
        Ok(self.root.join(rel).exists())
    }

    fn size(&self, rel: &str) -> Result<u64> {
        let path = self.root.join(rel);
        std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(io("cannot look up", &path))
    }

    fn list_dirs(&self) -> Result<Vec<String>> {
        self.list(&self.root, true)
    }

    fn list_files(&self, dir: &str) -> Result<Vec<String>> {
        self.list(&self.root.join(dir), false)
    }

    fn remove_dir(&self, dir: &str) -> Result<()> {
        let path = self.root.join(dir);
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("cannot remove", &path)(e)),
            _ => Ok(()),
        }
    }

    fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(io("cannot create", &self.root))
    }

    fn show(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl LocalStorage {
    fn list(&self, dir: &Path, dirs: bool) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list", dir)(e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() == dirs))
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect())
    }
}

#[cfg(feature = "object-storage")]
mod object {
    use super::*;
    use futures_util::TryStreamExt;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    /// `s3://bucket/prefix` through `object_store`.
    pub(crate) struct ObjectStorage {
        store: Box<dyn ObjectStore>,
        /// The URI without its parameters, for messages.
        uri: String,
        prefix: String,
        runtime: tokio::runtime::Runtime,
    }

    impl ObjectStorage {
        pub(crate) fn open(uri: &str) -> Result<Self> {
            let bad = |why: String| Error::Config(format!("checkpoint location {uri}: {why}"));
            let (location, query) = uri.split_once('?').unwrap_or((uri, ""));
            let rest = location.strip_prefix("s3://").unwrap_or(location);
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (s3://bucket/prefix)".into()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(format!("'{pair}' is not name=value")))?;
                let key = match k {
                    "endpoint" => AmazonS3ConfigKey::Endpoint,
                    "region" => AmazonS3ConfigKey::Region,
                    "allow_http" => AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
                    _ => {
                        return Err(bad(format!(
                            "unknown parameter '{k}' (endpoint, region, allow_http; credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never from the URI)"
                        )))
                    }
                };
                builder = builder.with_config(key, v);
            }
            // A plain-HTTP endpoint (a server on the loopback, as in the tests) is allowed when
            // it is named explicitly.
            let endpoint = builder
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .unwrap_or_default();
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|e| bad(e.to_string()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Execution(format!("cannot start the runtime of {uri}: {e}")))?;
            Ok(ObjectStorage {
                store: Box::new(store),
                uri: location.trim_end_matches('/').to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                runtime,
            })
        }

        fn path(&self, rel: &str) -> ObjectPath {
            match self.prefix.as_str() {
                "" => ObjectPath::from(rel),
                p => ObjectPath::from(format!("{p}/{rel}")),
            }
        }

        fn failed(&self, what: &'static str, rel: &str, e: object_store::Error) -> Error {
            Error::Network {
                what,
                address: format!("{}/{rel}", self.uri),
                source: std::io::Error::other(e),
            }
        }

        /// Runs `f` on the storage's runtime.
        fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
            self.runtime.block_on(f)
        }

        fn list(&self, dir: &str) -> Result<object_store::ListResult> {
            let prefix = match dir {
                "" if self.prefix.is_empty() => None,
                "" => Some(ObjectPath::from(self.prefix.as_str())),
                d => Some(self.path(d)),
            };
            self.block_on(self.store.list_with_delimiter(prefix.as_ref()))
                .map_err(|e| self.failed("cannot list", dir, e))
        }
    }

    impl Storage for ObjectStorage {
        fn local_dir(&self) -> Option<&Path> {
            None
        }

        fn put_with(&self, rel: &str, fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
            let mut bytes = Vec::new();
            fill(&mut bytes).map_err(|e| Error::Execution(format!("cannot encode {}/{rel}: {e}", self.uri)))?;
            let path = self.path(rel);
            self.block_on(self.store.put(&path, PutPayload::from(bytes)))
                .map(|_| ())
                .map_err(|e| self.failed("cannot write", rel, e))
        }

        fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
            let path = self.path(rel);
            let got = self.block_on(async {
                match self.store.get(&path).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            });
            got.map(|b| b.map(|b| b.to_vec()))
                .map_err(|e| self.failed("cannot read", rel, e))
        }

        fn exists(&self, rel: &str) -> Result<bool> {
            let path = self.path(rel);
            match self.block_on(self.store.head(&path)) {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.failed("cannot look up", rel, e)),
            }
        }

        fn size(&self, rel: &str) -> Result<u64> {
            let path = self.path(rel);
            self.block_on(self.store.head(&path))
                .map(|meta| meta.size)
                .map_err(|e| self.failed("cannot look up", rel, e))
        }

        fn list_dirs(&self) -> Result<Vec<String>> {
            Ok(self
                .list("")?
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect())
        }

        fn list_files(&self, dir: &str) -> Result<Vec<String>> {
            Ok(self
                .list(dir)?
                .objects
                .iter()
                .filter_map(|o| o.location.filename().map(str::to_string))
                .collect())
        }

        fn remove_dir(&self, dir: &str) -> Result<()> {
            let prefix = self.path(dir);
            self.block_on(async {
                let objects: Vec<ObjectPath> = self
                    .store
                    .list(Some(&prefix))
                    .map_ok(|o| o.location)
                    .try_collect()
                    .await?;
                for o in objects {
                    self.store.delete(&o).await?;
                }
                Ok(())
            })
            .map_err(|e| self.failed("cannot remove", dir, e))
        }

        fn create(&self) -> Result<()> {
            Ok(())
        }

        fn show(&self, rel: &str) -> PathBuf {
            PathBuf::from(format!("{}/{rel}", self.uri))
        }
    }
}

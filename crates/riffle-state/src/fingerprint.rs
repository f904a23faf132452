//! Job fingerprints: what a job's checkpointed state depends on, so that a checkpoint is
//! never restored into a job that would misread it.
//!
//! A checkpoint holds operator state in the shape one job gave it: window panes of a window
//! size, sketches of a method and precision, source positions in splits of one input. Restored
//! into a job with another window size, the panes mix with new ones; into another job, the
//! state fails to decode (or worse, decodes). So every checkpoint carries the fingerprint of the
//! job that took it (`chk-N/job.json`, a JSON object of named fields, readable and diffable),
//! and [`CheckpointStore::open`](crate::store::CheckpointStore::open) compares it field
//! by field with the restoring job's before it writes anything, refusing a difference with an
//! error that names each one.
//!
//! Neither the store nor the runtime decides which settings matter: the job (the CLI) lists the
//! fields its state depends on (job kind, windowing, lateness, time characteristic, aggregate
//! and its parameters, the source) and leaves out those that are safe to change between runs
//! (worker and process counts, sinks, checkpoint interval and retention), as Flink's savepoint
//! compatibility rules allow a change of parallelism or sink but not of an operator's state
//! type.
//!
//! ```
//! use riffle_state::JobFingerprint;
//!
//! let taken = JobFingerprint::new("riffle wordcount").with("--window", "10s");
//! let now = JobFingerprint::new("riffle wordcount").with("--window", "5s");
//! let diffs = now.differences(&taken);
//! assert_eq!(diffs.len(), 1);
//! assert_eq!(
//!     diffs[0].to_string(),
//!     "it was taken by a job with --window 10s; this job has --window 5s"
//! );
//! assert!(now.check_restore(&taken, "ck".as_ref()).is_err());
//! assert!(now.check_restore(&now.clone(), "ck".as_ref()).is_ok());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use riffle_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The name of the field that holds the job's kind (see [`JobFingerprint::new`]).
pub const JOB_FIELD: &str = "job";

/// The file of a checkpoint directory (`chk-N/job.json`) that holds the fingerprint of the
/// job that took it.
pub const FINGERPRINT_FILE: &str = "job.json";

/// What a job's checkpointed state depends on, as named fields (`"--window" → "10s"`): two
/// jobs whose fingerprints are equal can restore each other's checkpoints.
///
/// Fields are compared as strings, so a job should store normalised values (a duration as
/// `10s` whether the flag said `10s` or `10000ms`). A setting that is absent (no `--window`)
/// is simply not a field: it differs from any value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobFingerprint {
    fields: BTreeMap<String, String>,
}

impl JobFingerprint {
    /// The fingerprint of a job of kind `job` (e.g. `riffle wordcount`), with no other field yet.
    pub fn new(job: impl Into<String>) -> Self {
        JobFingerprint::default().with(JOB_FIELD, job.into())
    }

    /// Adds (or replaces) the field `name` with `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl fmt::Display) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds the field `name` with `value` when there is one (an absent setting is no field).
    pub fn with_opt<V: fmt::Display>(self, name: impl Into<String>, value: Option<V>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    /// Adds (or replaces) the field `name` with `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl fmt::Display) {
        self.fields.insert(name.into(), value.to_string());
    }

    /// The value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Every field, by name.
    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }

    /// How this job differs from the job that took a checkpoint with the fingerprint `taken`,
    /// one entry per field whose value differs (or that only one of them has), by field name;
    /// the job kind first.
    pub fn differences(&self, taken: &JobFingerprint) -> Vec<FingerprintDifference> {
        let mut names: Vec<&String> = self.fields.keys().chain(taken.fields.keys()).collect();
        names.sort_by_key(|n| (n.as_str() != JOB_FIELD, n.as_str()));
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| {
                let (checkpoint, job) = (taken.fields.get(name), self.fields.get(name));
                (checkpoint != job).then(|| FingerprintDifference {
                    field: name.clone(),
                    checkpoint: checkpoint.cloned(),
                    job: job.cloned(),
                })
            })
            .collect()
    }

    /// Whether this job may restore a checkpoint in `dir` taken by a job with the fingerprint
    /// `taken`: a [`Error::Config`] naming every difference if not (only the job kind when
    /// that differs: the settings of another kind of job are beside the point).
    pub fn check_restore(&self, taken: &JobFingerprint, dir: &Path) -> Result<()> {
        let mut diffs = self.differences(taken);
        if diffs.is_empty() {
            return Ok(());
        }
        if diffs[0].field == JOB_FIELD {
            diffs.truncate(1);
        }
        let list: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        Err(Error::Config(format!(
            "checkpoint in {} cannot be restored into this job: {}. Its state would be misread; \
             run the job as it was, or start afresh with another --checkpoint-dir",
            dir.display(),
            list.join("; and ")
        )))
    }

    /// The fingerprint as the JSON object a checkpoint stores (one field per line).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Execution(format!("cannot encode a job fingerprint: {e}")))
    }

    /// Reads a fingerprint from the JSON object of `path` (for error messages).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Execution(format!("job fingerprint {} is unusable: {e}", path.display())))
    }
}

/// One field in which a job differs from the job that took a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerprintDifference {
    /// The field's name (a flag such as `--window`, or [`JOB_FIELD`]).
    pub field: String,
    /// Its value in the checkpoint, `None` if the checkpoint's job did not have it.
    pub checkpoint: Option<String>,
    /// Its value in this job, `None` if this job does not have it.
    pub job: Option<String>,
}

impl fmt::Display for FingerprintDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == JOB_FIELD {
            let kind = |v: &Option<String>| v.clone().unwrap_or_else(|| "unnamed".into());
            return write!(
                f,
                "it was taken by a {} job; this job is {}",
                kind(&self.checkpoint),
                kind(&self.job)
            );
        }
        let setting = |v: &Option<String>| match v {
            Some(v) => format!("with {} {v}", self.field),
            None => format!("without {}", self.field),
        };
        let this = match &self.job {
            Some(v) => format!("has {} {v}", self.field),
            None => format!("has no {}", self.field),
        };
        write!(
            f,
            "it was taken by a job {}; this job {this}",
            setting(&self.checkpoint)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wordcount() -> JobFingerprint {
        JobFingerprint::new("riffle wordcount")
            .with("--window", "10s")
            .with("--source", "file://words.txt")
            .with("--time", "event")
    }

    #[test]
    fn equal_fingerprints_have_no_difference() {
        assert!(wordcount().differences(&wordcount()).is_empty());
        assert!(wordcount().check_restore(&wordcount(), Path::new("ck")).is_ok());
        assert!(JobFingerprint::default()
            .differences(&JobFingerprint::default())
            .is_empty());
    }

    #[test]
    fn each_difference_is_named_with_both_values() {
        let taken = wordcount();
        let now = wordcount()
            .with("--window", "5s")
            .with("--source", "file://other.txt")
            .with("--slide", "1s");
        let diffs = now.differences(&taken);
        let fields: Vec<&str> = diffs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["--slide", "--source", "--window"]);
        let e = now.check_restore(&taken, Path::new("/tmp/ck")).expect_err("refused");
        let text = e.to_string();
        assert!(matches!(e, Error::Config(_)));
        for part in [
            "checkpoint in /tmp/ck",
            "it was taken by a job with --window 10s; this job has --window 5s",
            "it was taken by a job with --source file://words.txt; this job has --source file://other.txt",
            "it was taken by a job without --slide; this job has --slide 1s",
        ] {
            assert!(text.contains(part), "{part:?} missing in {text}");
        }
        let removed = wordcount().differences(&now);
        assert_eq!(
            removed[0].to_string(),
            "it was taken by a job with --slide 1s; this job has no --slide"
        );
    }

    #[test]
    fn the_job_kind_comes_first_and_reads_as_a_kind() {
        let taken = wordcount();
        let now = JobFingerprint::new("riffle topk")
            .with("--window", "10s")
            .with("--source", "file://words.txt")
            .with("--time", "event")
            .with("--k", 10);
        let diffs = now.differences(&taken);
        assert_eq!(diffs[0].field, JOB_FIELD);
        assert_eq!(
            diffs[0].to_string(),
            "it was taken by a riffle wordcount job; this job is riffle topk"
        );
        assert_eq!(diffs.len(), 2, "the kind and --k: {diffs:?}");
        let e = now
            .check_restore(&taken, Path::new("ck"))
            .expect_err("refused")
            .to_string();
        assert!(!e.contains("--k"), "only the kind is named: {e}");
    }

    #[test]
    fn the_stored_form_is_a_readable_json_object_that_reads_back() {
        let f = wordcount();
        let json = f.to_json().expect("encode");
        assert!(json.contains("\"--window\": \"10s\""), "{json}");
        assert!(json.contains("\"job\": \"riffle wordcount\""), "{json}");
        assert_eq!(
            JobFingerprint::from_json(&json, Path::new("job.json")).expect("decode"),
            f
        );
        assert!(JobFingerprint::from_json("{\"a\": 1", Path::new("job.json")).is_err());
    }
}

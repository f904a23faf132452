//! Parsing of human-written durations (`5s`, `250ms`, `1m 30s`) into milliseconds.

use crate::error::{Error, Result};

/// Parses a duration such as `5s`, `250ms` or `2min` into whole milliseconds.
///
/// A bare `0` is accepted as zero. Sub-millisecond parts are rejected rather than rounded
/// silently, and so are durations above [`crate::time::MAX_DURATION`] (about 36 million
/// years), which window arithmetic could not represent.
///
/// ```
/// use riffle_core::duration::parse_millis;
/// assert_eq!(parse_millis("5s").unwrap(), 5_000);
/// assert_eq!(parse_millis("1m 30s").unwrap(), 90_000);
/// assert_eq!(parse_millis("0").unwrap(), 0);
/// assert!(parse_millis("five seconds").is_err());
/// ```
pub fn parse_millis(text: &str) -> Result<i64> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| Error::Config(format!("invalid duration '{text}': {e} (examples: 5s, 250ms, 1m)")))?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(Error::Config(format!(
            "invalid duration '{text}': finer than a millisecond"
        )));
    }
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms <= crate::time::MAX_DURATION => Ok(ms),
        _ => Err(Error::Config(format!(
            "invalid duration '{text}': too large (at most {} ms)",
            crate::time::MAX_DURATION
        ))),
    }
}

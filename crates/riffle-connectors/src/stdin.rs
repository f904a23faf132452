//! Standard input: `-` or `stdin://`, one split read by a background thread until the
//! writer closes it. Not replayable.

use riffle_core::Result;

use crate::reader_thread::ThreadedLines;
use crate::source::{LineReader, Source, Split, SplitPosition, SplitSpec};

/// `-` or `stdin://`: standard input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StdinSource;

impl Source for StdinSource {
    fn name(&self) -> String {
        "stdin".into()
    }

    fn splits(&self) -> Result<Vec<SplitSpec>> {
        Ok(vec![SplitSpec::new(StdinSource)])
    }
}

impl Split for StdinSource {
    fn name(&self) -> String {
        "stdin".into()
    }

    fn description(&self) -> String {
        "standard input".into()
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn is_replayable(&self) -> bool {
        false
    }

    fn open_at(&self, _position: Option<SplitPosition>) -> Result<Box<dyn LineReader>> {
        Ok(Box::new(ThreadedLines::spawn("stdin".into(), std::io::stdin())))
    }
}

//! Text helpers shared by jobs that read lines of words: the tokenizer of the word count, the
//! distinct and top-k jobs and the word-count benchmark lives here, in one place, so that the
//! jobs and the benchmark that measures them split lines the same way.

use compact_str::CompactString;

/// Splits an owned line into words without allocating per word (short words are inline).
/// Words are what `str::split_whitespace` yields; ASCII lines take a byte-scanning path.
struct Words {
    line: String,
    pos: usize,
    ascii: bool,
}

/// `char::is_whitespace` restricted to ASCII (it includes the vertical tab, unlike
/// `u8::is_ascii_whitespace`).
#[inline]
fn ascii_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

impl Iterator for Words {
    type Item = CompactString;
    #[inline]
    fn next(&mut self) -> Option<CompactString> {
        if self.ascii {
            let bytes = self.line.as_bytes();
            let mut i = self.pos;
            while i < bytes.len() && ascii_space(bytes[i]) {
                i += 1;
            }
            if i == bytes.len() {
                self.pos = i;
                return None;
            }
            let start = i;
            while i < bytes.len() && !ascii_space(bytes[i]) {
                i += 1;
            }
            self.pos = i;
            return Some(CompactString::from(&self.line[start..i]));
        }
        let rest = &self.line[self.pos..];
        let start = rest.find(|c: char| !c.is_whitespace())?;
        let rest = &rest[start..];
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.pos += start + len;
        Some(CompactString::from(&rest[..len]))
    }
}

/// Splits a line into its words: the words `str::split_whitespace` yields, as compact strings
/// (inline up to 24 bytes, so that short words cost no allocation). Takes the line by value,
/// as `flat_map` over a stream of lines hands it over.
///
/// # Example
/// ```
/// use riffle_core::text::words;
/// let got: Vec<_> = words("  to be\tor not\u{2003}to be ".to_string()).collect();
/// assert_eq!(got, ["to", "be", "or", "not", "to", "be"]);
/// ```
#[inline] // called per line, across crates (jobs, benchmarks)
pub fn words(line: String) -> impl Iterator<Item = CompactString> {
    let ascii = line.is_ascii();
    Words { line, pos: 0, ascii }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_any_whitespace() {
        for line in ["  a bb\tccc  ", "x\u{0B}y\u{0C}z\r\n", "é  ü\u{2003}ß", "", "   "] {
            let got: Vec<_> = words(line.to_string()).collect();
            let expect: Vec<_> = line.split_whitespace().collect();
            assert_eq!(got, expect, "{line:?}");
        }
        assert_eq!(words(String::new()).count(), 0);
    }
}

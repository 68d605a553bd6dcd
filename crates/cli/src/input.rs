//! Reading submissions: JSON Lines (one document per line, blank lines
//! skipped, a byte-order mark at the start ignored) or a file holding one
//! JSON document, possibly spread over many lines.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// One submission's bytes and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// 1-based line of the input where the submission starts.
    pub line: usize,
    pub bytes: Vec<u8>,
}

/// Opens a path for reading; `-` is standard input.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    if path == Path::new("-") {
        Ok(Box::new(BufReader::with_capacity(1 << 16, io::stdin())))
    } else {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            File::open(path)?,
        )))
    }
}

/// Streams the non-blank lines of a JSON Lines input, in bounded memory.
#[derive(Debug)]
pub struct JsonLines<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonLines<R> {
    /// Reads `reader` line by line.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::with_capacity(8192),
        }
    }

    /// The next non-blank line, its bytes in a buffer reused between calls.
    pub fn next_line(&mut self) -> io::Result<Option<(usize, &[u8])>> {
        loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let mut bytes = self.buf.as_slice();
            if self.line == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                let len = bytes.trim_ascii_end().len();
                let start = self.buf.len() - bytes.len();
                return Ok(Some((self.line, &self.buf[start..start + len])));
            }
        }
    }
}

/// Reads the submissions of `path` (`-`: standard input) with [`read_all`].
pub fn read_path(path: &Path) -> io::Result<Vec<Submission>> {
    open(path).and_then(read_all)
}

/// [`read_path`], its error naming the path (exit code 2).
pub fn read_submissions(path: &Path) -> Result<Vec<Submission>, crate::RunError> {
    read_path(path).map_err(|source| crate::RunError::Input {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a whole input: one JSON document (even pretty-printed over many
/// lines) when the text is one JSON value, JSON Lines otherwise.
pub fn read_all(mut reader: impl Read) -> io::Result<Vec<Submission>> {
    let mut text = Vec::new();
    reader.read_to_end(&mut text)?;
    let body = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
    let blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    let non_blank_lines = body.split(|b| *b == b'\n').filter(|l| !blank(l)).count();
    if non_blank_lines > 1 && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        let line = body.split(|b| *b == b'\n').take_while(|l| blank(l)).count() + 1;
        return Ok(vec![Submission {
            line,
            bytes: body.trim_ascii().to_vec(),
        }]);
    }
    let mut lines = JsonLines::new(io::Cursor::new(&text));
    let mut out = Vec::new();
    while let Some((line, bytes)) = lines.next_line()? {
        out.push(Submission {
            line,
            bytes: bytes.to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_skip_blanks_bom_and_carriage_returns() {
        let input = b"\xef\xbb\xbf{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}";
        let mut r = JsonLines::new(&input[..]);
        let mut got = Vec::new();
        while let Some((n, l)) = r.next_line().unwrap() {
            got.push((n, String::from_utf8(l.to_vec()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (1, "{\"a\":1}".into()),
                (4, "{\"b\":2}".into()),
                (5, "{\"c\":3}".into())
            ]
        );
    }

    #[test]
    fn a_pretty_printed_document_is_one_submission() {
        let subs = read_all(&b"\n{\n  \"a\": 1,\n  \"b\": [2]\n}\n"[..]).unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].line, 2);
        let subs = read_all(&b"{\"a\":1}\n{\"b\":2}\n"[..]).unwrap();
        assert_eq!(subs.len(), 2);
        let subs = read_all(&b"{not json\n"[..]).unwrap();
        assert_eq!(
            subs,
            [Submission {
                line: 1,
                bytes: b"{not json".to_vec()
            }]
        );
    }
}

//! Avro binary encoding primitives (the subset the pipeline's schemas use).
//!
//! The codecs in [`crate::codec`] are written against these by hand for the
//! current schema versions: decoding straight into the domain types, with no
//! intermediate `Value` tree, is what keeps decode + rules above 100k
//! documents per second. Tests check every codec against `apache-avro`
//! reading and writing the `.avsc` files, so the hand-written code cannot
//! drift from the schemas.

use crate::DecodeError;

/// Appends Avro binary values to a buffer.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    pub(crate) fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }

    pub(crate) fn int(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    pub(crate) fn string(&mut self, s: &str) {
        self.long(s.len() as i64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn enum_index(&mut self, index: usize) {
        self.long(index as i64);
    }

    /// A `["null", T]` union.
    pub(crate) fn optional<T>(&mut self, v: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.long(0),
            Some(v) => {
                self.long(1);
                write(self, v);
            }
        }
    }

    /// An array, as one block followed by the end marker.
    pub(crate) fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                write(self, item);
            }
        }
        self.long(0);
    }
}

/// The value of a zigzag-encoded integer.
fn zigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Reads Avro binary values from a slice, with typed errors that say where.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// No value read so far could have been written in other bytes: every
    /// variable-length integer was minimal and every array was one block
    /// of a positive count (what [`Writer`] writes).
    canonical: bool,
    /// Whether [`text_into`](Self::text_into) reads its strings.
    read_text: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            canonical: true,
            read_text: true,
        }
    }

    /// A reader whose [`text_into`](Self::text_into) passes over its
    /// strings: not copied, not checked as UTF-8, left empty.
    pub(crate) fn skimming(buf: &'a [u8]) -> Self {
        Self {
            read_text: false,
            ..Self::new(buf)
        }
    }

    /// True when the bytes read so far are the only encoding of the values
    /// read: [`Writer`] writing them again gives the same bytes.
    pub(crate) fn canonical(&self) -> bool {
        self.canonical
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn truncated(&self, what: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            what,
            offset: self.pos,
            needed,
        }
    }

    pub(crate) fn invalid(&self, what: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what,
            offset: self.pos,
            detail: detail.into(),
        }
    }

    pub(crate) fn long(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        // One byte: string lengths, enum and union indexes, array counts and
        // small numbers, most of the integers a document holds.
        if let Some(&byte) = self.buf.get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(zigzag(u64::from(byte)));
        }
        self.long_multibyte(what)
    }

    /// [`long`](Self::long) of a value over several bytes (or none left).
    #[inline(never)]
    fn long_multibyte(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.truncated(what, 1));
            };
            self.pos += 1;
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // A last byte of zero after others pads the value.
                self.canonical &= byte != 0 || shift == 0;
                return Ok(zigzag(z));
            }
        }
        Err(self.invalid(what, "variable-length integer longer than 10 bytes"))
    }

    pub(crate) fn int(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let v = self.long(what)?;
        i32::try_from(v).map_err(|_| self.invalid(what, format!("{v} does not fit an Avro int")))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.long(what)?;
        usize::try_from(n).map_err(|_| self.invalid(what, format!("negative length {n}")))
    }

    /// The bytes of the string that starts here, its length read and
    /// checked against what is left; not yet passed over.
    fn string_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.len(what)?;
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(self.truncated(what, n - available));
        }
        Ok(&self.buf[self.pos..self.pos + n])
    }

    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.string_bytes(what)?;
        let s = self.utf8(what, bytes)?;
        self.pos += bytes.len();
        Ok(s)
    }

    /// `bytes` of the string `what` as text.
    fn utf8<'b>(&self, what: &'static str, bytes: &'b [u8]) -> Result<&'b str, DecodeError> {
        std::str::from_utf8(bytes).map_err(|e| self.invalid(what, format!("not UTF-8: {e}")))
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.str(what).map(str::to_owned)
    }

    /// A string read into `s`, reusing its allocation. Bytes equal to what
    /// `s` holds (a document decoded into the one before it: the same
    /// SKUs, quarters, names) are valid UTF-8 already and are left as they
    /// are: no check, no copy.
    pub(crate) fn string_into(
        &mut self,
        what: &'static str,
        s: &mut String,
    ) -> Result<(), DecodeError> {
        let bytes = self.string_bytes(what)?;
        if s.as_bytes() != bytes {
            let v = self.utf8(what, bytes)?;
            s.clear();
            s.push_str(v);
        }
        self.pos += bytes.len();
        Ok(())
    }

    /// A string that only some readers need (free text, references): read
    /// into `s` as [`string_into`](Self::string_into) does, or passed over
    /// by a [`skimming`](Self::skimming) reader, leaving `s` empty.
    pub(crate) fn text_into(
        &mut self,
        what: &'static str,
        s: &mut String,
    ) -> Result<(), DecodeError> {
        if self.read_text {
            return self.string_into(what, s);
        }
        self.pos += self.string_bytes(what)?.len();
        s.clear();
        Ok(())
    }

    /// An enum index, checked against the number of symbols.
    pub(crate) fn enum_value<T>(
        &mut self,
        what: &'static str,
        from_index: impl FnOnce(usize) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let i = self.long(what)?;
        usize::try_from(i)
            .ok()
            .and_then(from_index)
            .ok_or_else(|| self.invalid(what, format!("enum index {i} out of range")))
    }

    /// The branch of a `["null", T]` union: whether a `T` follows.
    fn present(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.long(what)? {
            0 => Ok(false),
            1 => Ok(true),
            i => Err(self.invalid(what, format!("union index {i} out of range"))),
        }
    }

    /// A `["null", T]` union.
    pub(crate) fn optional<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.present(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A `["null", T]` union read into `slot`, reusing the `T` it holds
    /// (`new` makes one when it holds none).
    pub(crate) fn optional_into<T>(
        &mut self,
        what: &'static str,
        slot: &mut Option<T>,
        new: impl FnOnce() -> T,
        read: impl FnOnce(&mut Self, &mut T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        if self.present(what)? {
            read(self, slot.get_or_insert_with(new))
        } else {
            *slot = None;
            Ok(())
        }
    }

    /// Calls `item(self, index, left)` for each item of an array in any
    /// block layout (negative block counts carry a byte size), `left` being
    /// the items of the current block from this one on; returns the number
    /// of items.
    fn items(
        &mut self,
        what: &'static str,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), DecodeError>,
    ) -> Result<usize, DecodeError> {
        let mut n = 0;
        loop {
            let count = self.long(what)?;
            if count == 0 {
                return Ok(n);
            }
            // One block of a positive count is how Writer writes an array.
            self.canonical &= count > 0 && n == 0;
            if count < 0 {
                self.long(what)?; // block size in bytes; not needed
            }
            let count = count.unsigned_abs();
            // Every item takes at least one byte: a count above what is left is corrupt.
            if count > (self.buf.len() - self.pos) as u64 {
                return Err(
                    self.truncated(what, (count - (self.buf.len() - self.pos) as u64) as usize)
                );
            }
            for k in 0..count {
                item(self, n, (count - k) as usize)?;
                n += 1;
            }
        }
    }

    /// An array.
    pub(crate) fn array<T>(
        &mut self,
        what: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut items = Vec::new();
        self.items(what, |r, _, left| {
            items.reserve(left);
            items.push(read(r)?);
            Ok(())
        })?;
        Ok(items)
    }

    /// An array read into `items`, reusing the items (and their
    /// allocations) it holds; `new` makes the ones it lacks.
    pub(crate) fn array_into<T>(
        &mut self,
        what: &'static str,
        items: &mut Vec<T>,
        new: impl Fn() -> T,
        mut read: impl FnMut(&mut Self, &mut T) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let n = self.items(what, |r, i, left| {
            if i == items.len() {
                items.reserve(left);
                items.push(new());
            }
            read(r, &mut items[i])
        })?;
        items.truncate(n);
        Ok(())
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { count: extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn longs_round_trip(v: i64) {
            let mut buf = Vec::new();
            Writer::new(&mut buf).long(v);
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.long("v").unwrap(), v);
            r.finish().unwrap();
            prop_assert!(r.canonical());
        }

        /// Whichever path reads it (one byte or several), an integer reads
        /// as the Avro spec's zigzag varint: value, length, and whether it
        /// was padded; no terminating byte within 10 is an error.
        #[test]
        fn longs_read_as_the_spec_decodes_them(bytes in proptest::collection::vec(
            // The bytes at the edges of a varint's last and continuation bytes, often.
            prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0x81), Just(0xff), any::<u8>()],
            0..12,
        )) {
            let mut spec = None;
            let mut z = 0u64;
            for (i, &b) in bytes.iter().enumerate().take(10) {
                z |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    spec = Some(((z >> 1) as i64 ^ -((z & 1) as i64), i + 1, b != 0 || i == 0));
                    break;
                }
            }
            let mut r = Reader::new(&bytes);
            match (r.long("v"), spec) {
                (Ok(v), Some(expected)) => prop_assert_eq!((v, r.position(), r.canonical()), expected),
                (Err(_), None) => {}
                (got, expected) => prop_assert!(false, "read {:?}, the spec says {:?}", got, expected),
            }
        }

        /// Reading into a string that already holds the same text, other
        /// text or nothing gives what reading afresh gives: the text, or
        /// the same error (not UTF-8, truncated), and the same position.
        #[test]
        fn a_string_read_into_another_reads_as_a_fresh_one(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(0xc3u8), Just(0xa9), Just(0xff), any::<u8>()],
                0..8,
            ),
            before in prop_oneof![Just(String::new()), Just("a".to_owned()), Just("é".to_owned()), ".*"],
            same in any::<bool>(),
        ) {
            let mut buf = Vec::new();
            Writer::new(&mut buf).long(bytes.len() as i64);
            buf.extend_from_slice(&bytes);
            let before = match (same, std::str::from_utf8(&bytes)) {
                (true, Ok(text)) => text.to_owned(),
                _ => before,
            };
            let mut fresh = Reader::new(&buf);
            let expected = fresh.str("s").map(str::to_owned);
            let mut into = Reader::new(&buf);
            let mut s = before.clone();
            match (into.string_into("s", &mut s), expected) {
                (Ok(()), Ok(text)) => {
                    prop_assert_eq!(s, text);
                    prop_assert_eq!(into.position(), buf.len());
                }
                (Err(got), Err(e)) => prop_assert_eq!(got.to_string(), e.to_string()),
                (got, expected) => prop_assert!(false, "read {:?} into {:?}, afresh {:?}", got, before, expected),
            }
        }

        #[test]
        fn truncated_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut r = Reader::new(&bytes);
            let _ = r.array("a", |r| r.str("s").map(str::len));
        }
    }

    #[test]
    fn other_encodings_of_the_same_values_are_told_apart() {
        let read = |bytes: &[u8]| {
            let mut r = Reader::new(bytes);
            let items = r.array("a", |r| r.long("x")).unwrap();
            r.finish().unwrap();
            (items, r.canonical())
        };
        // What Writer writes: one block of a positive count, minimal integers.
        assert_eq!(read(&[4, 2, 4, 0]), (vec![1, 2], true));
        assert_eq!(read(&[0]), (vec![], true));
        // A padded integer, two blocks, a negative count with its byte size.
        assert_eq!(read(&[4, 0x82, 0x00, 4, 0]), (vec![1, 2], false));
        assert_eq!(read(&[2, 2, 2, 4, 0]), (vec![1, 2], false));
        assert_eq!(read(&[3, 4, 2, 4, 0]), (vec![1, 2], false));
        // Zero itself is one byte.
        let mut r = Reader::new(&[0x80, 0x00]);
        assert_eq!(r.long("x").unwrap(), 0);
        assert!(!r.canonical());
    }

    #[test]
    fn zigzag_matches_the_avro_spec() {
        for (v, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut buf = Vec::new();
            Writer::new(&mut buf).long(v);
            assert_eq!(buf, bytes, "{v}");
            assert_eq!(Reader::new(&bytes).long("v").unwrap(), v, "{bytes:?}");
        }
    }

    #[test]
    fn a_truncated_or_overlong_integer_says_where() {
        let err = Reader::new(&[0x80]).long("quantity").unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Truncated {
                    what: "quantity",
                    offset: 1,
                    needed: 1
                }
            ),
            "{err:?}"
        );
        let err = Reader::new(&[0xff; 11]).long("quantity").unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Invalid {
                    what: "quantity",
                    offset: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

//! A strict, bounded CBOR reader.
//!
//! minicbor decodes every primitive without allocating and checks lengths against the input,
//! but a SUIT processor must also refuse what minicbor accepts: indefinite lengths, duplicate map
//! keys, trailing bytes and unbounded nesting. This module adds exactly those rules on top of
//! minicbor's `Decoder`, so every structure in this crate is read through one audited path.
//!
//! Every item read borrows from the input (zero-copy). Nothing here allocates or panics.

use minicbor::Decoder;
use minicbor::data::Type;

use crate::error::Error;

/// The deepest CBOR nesting [`Reader::skip`] follows before it refuses the input.
///
/// SUIT nests structure through bstr wrapping, which does not count here, so legitimate
/// manifests stay far below this bound; it exists so that hostile input cannot exhaust the stack.
pub(crate) const MAX_CBOR_DEPTH: usize = 16;

/// The most entries a map may hold. SUIT maps are small (a parameter map has at most a few dozen
/// keys); the bound keeps the quadratic duplicate-key check cheap on hostile input.
pub(crate) const MAX_MAP_ENTRIES: u64 = 64;

/// The CBOR major kind of the next item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Uint,
    Nint,
    Bytes,
    Text,
    Array,
    Map,
    Tag,
    Bool,
    Null,
    /// Floats, undefined and other simple values: valid CBOR that SUIT never uses in a typed
    /// position, but which may appear inside opaque data such as a CoSWID.
    Other,
}

/// A cursor over one CBOR buffer.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    dec: Decoder<'a>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            dec: Decoder::new(bytes),
        }
    }

    /// The byte offset of the next item.
    pub(crate) fn position(&self) -> usize {
        self.dec.position()
    }

    fn input(&self) -> &'a [u8] {
        self.dec.input()
    }

    fn remaining(&self) -> usize {
        self.input().len().saturating_sub(self.position())
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes between `start` and the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.input().get(start..self.position()).unwrap_or_default()
    }

    pub(crate) fn malformed(&self, what: &'static str) -> Error {
        Error::Malformed {
            at: self.position(),
            what,
        }
    }

    /// RFC 8949 §5.3.1: a decoder for a protocol that defines a single item must reject data
    /// after it ("trailing bytes").
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.is_at_end() {
            Ok(())
        } else {
            Err(self.malformed(what))
        }
    }

    /// The kind of the next item, refusing indefinite-length items outright.
    pub(crate) fn kind(&self) -> Result<Kind, Error> {
        let ty = self
            .dec
            .datatype()
            .map_err(|_| self.malformed("truncated CBOR item"))?;
        Ok(match ty {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => Kind::Uint,
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
                // minicbor reports small non-negative values of major type 1 never, so an
                // I* type here is always a negative integer (major type 1).
                Kind::Nint
            }
            Type::Bytes => Kind::Bytes,
            Type::String => Kind::Text,
            Type::Array => Kind::Array,
            Type::Map => Kind::Map,
            Type::Tag => Kind::Tag,
            Type::Bool => Kind::Bool,
            Type::Null => Kind::Null,
            Type::F16 | Type::F32 | Type::F64 | Type::Simple | Type::Undefined => Kind::Other,
            // SUIT requires definite lengths throughout (deterministic encoding, RFC 8949 §4.2.1).
            Type::BytesIndef | Type::StringIndef | Type::ArrayIndef | Type::MapIndef => {
                return Err(self.malformed("indefinite-length item"));
            }
            Type::Break => return Err(self.malformed("unexpected break")),
            Type::Unknown(_) => return Err(self.malformed("reserved CBOR initial byte")),
        })
    }

    pub(crate) fn uint(&mut self) -> Result<u64, Error> {
        if self.kind()? != Kind::Uint {
            return Err(self.malformed("expected unsigned integer"));
        }
        self.dec
            .u64()
            .map_err(|_| self.malformed("expected unsigned integer"))
    }

    /// An integer of major type 0 or 1 that fits an `i64`.
    pub(crate) fn int(&mut self) -> Result<i64, Error> {
        match self.kind()? {
            Kind::Uint | Kind::Nint => {
                let at = self.position();
                let value = self
                    .dec
                    .int()
                    .map_err(|_| self.malformed("expected integer"))?;
                i64::try_from(i128::from(value)).map_err(|_| Error::Malformed {
                    at,
                    what: "integer out of range",
                })
            }
            _ => Err(self.malformed("expected integer")),
        }
    }

    pub(crate) fn bstr(&mut self) -> Result<&'a [u8], Error> {
        if self.kind()? != Kind::Bytes {
            return Err(self.malformed("expected byte string"));
        }
        self.dec
            .bytes()
            .map_err(|_| self.malformed("byte string longer than the input"))
    }

    /// A byte string together with its encoding (header included), as SUIT digests cover the
    /// bstr-wrapped form (manifest §8.4.1, suit.md "Digest rule").
    pub(crate) fn bstr_with_header(&mut self) -> Result<(&'a [u8], &'a [u8]), Error> {
        let start = self.position();
        let content = self.bstr()?;
        Ok((self.since(start), content))
    }

    pub(crate) fn tstr(&mut self) -> Result<&'a str, Error> {
        if self.kind()? != Kind::Text {
            return Err(self.malformed("expected text string"));
        }
        self.dec
            .str()
            .map_err(|_| self.malformed("text string truncated or not UTF-8"))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        self.dec
            .bool()
            .map_err(|_| self.malformed("expected boolean"))
    }

    pub(crate) fn null(&mut self) -> Result<(), Error> {
        self.dec.null().map_err(|_| self.malformed("expected null"))
    }

    pub(crate) fn tag(&mut self) -> Result<u64, Error> {
        if self.kind()? != Kind::Tag {
            return Err(self.malformed("expected tag"));
        }
        self.dec
            .tag()
            .map(u64::from)
            .map_err(|_| self.malformed("expected tag"))
    }

    /// A definite-length array header. The count is checked against the input, since every
    /// element needs at least one byte, so a hostile count cannot make a caller loop for long.
    pub(crate) fn array(&mut self) -> Result<u64, Error> {
        if self.kind()? != Kind::Array {
            return Err(self.malformed("expected array"));
        }
        let n = self
            .dec
            .array()
            .map_err(|_| self.malformed("expected array"))?
            .ok_or_else(|| self.malformed("indefinite-length array"))?;
        if n > self.remaining() as u64 {
            return Err(self.malformed("array length beyond the input"));
        }
        Ok(n)
    }

    /// An array header that must announce exactly `n` elements.
    pub(crate) fn array_of(&mut self, n: u64, what: &'static str) -> Result<(), Error> {
        if self.array()? == n {
            Ok(())
        } else {
            Err(self.malformed(what))
        }
    }

    /// A definite-length map header, bounded by [`MAX_MAP_ENTRIES`] and by the input.
    pub(crate) fn map(&mut self) -> Result<Map, Error> {
        if self.kind()? != Kind::Map {
            return Err(self.malformed("expected map"));
        }
        let n = self
            .dec
            .map()
            .map_err(|_| self.malformed("expected map"))?
            .ok_or_else(|| self.malformed("indefinite-length map"))?;
        if n > MAX_MAP_ENTRIES {
            return Err(self.malformed("map has too many entries"));
        }
        if n.saturating_mul(2) > self.remaining() as u64 {
            return Err(self.malformed("map length beyond the input"));
        }
        Ok(Map {
            len: n,
            body: self.position(),
            next: 0,
        })
    }

    /// Starts the next key of `map`: returns its index, or `None` when the map is exhausted.
    /// The caller reads the key, then calls [`Reader::check_unique`].
    pub(crate) fn next_entry(&self, map: &mut Map) -> Option<(u64, usize)> {
        if map.next >= map.len {
            return None;
        }
        let index = map.next;
        map.next += 1;
        Some((index, self.position()))
    }

    /// RFC 8949 §5.6: maps with duplicate keys are not valid; a SUIT processor must not let a
    /// later duplicate silently replace a checked value. Compares the key that starts at
    /// `key_start` (and ends at the current position) with every earlier key of `map`.
    pub(crate) fn check_unique(
        &self,
        map: &Map,
        index: u64,
        key_start: usize,
    ) -> Result<(), Error> {
        let key = self
            .input()
            .get(key_start..self.position())
            .unwrap_or_default();
        let new = KeyRepr::of(key);
        let mut scan = Reader::new(self.input());
        scan.dec.set_position(map.body);
        for _ in 0..index {
            let start = scan.position();
            scan.skip()?;
            let earlier = KeyRepr::of(scan.since(start));
            if earlier == new {
                return Err(Error::Malformed {
                    at: key_start,
                    what: "duplicate map key",
                });
            }
            scan.skip()?;
        }
        Ok(())
    }

    /// Reads an integer map key and checks that it is unique.
    pub(crate) fn int_key(&mut self, map: &mut Map) -> Result<Option<i64>, Error> {
        let Some((index, start)) = self.next_entry(map) else {
            return Ok(None);
        };
        let key = self.int()?;
        self.check_unique(map, index, start)?;
        Ok(Some(key))
    }

    /// Skips one complete, well-formed item (validating it as strictly as a typed read would)
    /// and returns its encoding.
    pub(crate) fn skip(&mut self) -> Result<&'a [u8], Error> {
        let start = self.position();
        self.skip_at(0)?;
        Ok(self.since(start))
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), Error> {
        if depth > MAX_CBOR_DEPTH {
            return Err(self.malformed("CBOR nesting too deep"));
        }
        match self.kind()? {
            Kind::Uint | Kind::Nint => {
                self.dec
                    .int()
                    .map_err(|_| self.malformed("truncated integer"))?;
            }
            Kind::Bytes => {
                self.bstr()?;
            }
            Kind::Text => {
                self.tstr()?;
            }
            Kind::Array => {
                for _ in 0..self.array()? {
                    self.skip_at(depth + 1)?;
                }
            }
            Kind::Map => {
                let mut map = self.map()?;
                while let Some((index, start)) = self.next_entry(&mut map) {
                    self.skip_at(depth + 1)?;
                    self.check_unique(&map, index, start)?;
                    self.skip_at(depth + 1)?;
                }
            }
            Kind::Tag => {
                self.tag()?;
                self.skip_at(depth + 1)?;
            }
            Kind::Bool | Kind::Null | Kind::Other => {
                self.dec
                    .skip()
                    .map_err(|_| self.malformed("truncated simple value"))?;
            }
        }
        Ok(())
    }
}

/// Position and size of a map being read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Map {
    pub(crate) len: u64,
    body: usize,
    next: u64,
}

/// A map key reduced to its value, so that two encodings of one value compare equal.
#[derive(PartialEq, Eq)]
enum KeyRepr<'a> {
    Int(i128),
    Bytes(&'a [u8]),
    Text(&'a str),
    Raw(&'a [u8]),
}

impl<'a> KeyRepr<'a> {
    fn of(encoded: &'a [u8]) -> Self {
        let mut dec = Decoder::new(encoded);
        match dec.datatype() {
            Ok(Type::Bytes) => dec.bytes().map_or(KeyRepr::Raw(encoded), KeyRepr::Bytes),
            Ok(Type::String) => dec.str().map_or(KeyRepr::Raw(encoded), KeyRepr::Text),
            Ok(
                Type::U8
                | Type::U16
                | Type::U32
                | Type::U64
                | Type::I8
                | Type::I16
                | Type::I32
                | Type::I64
                | Type::Int,
            ) => dec
                .int()
                .map_or(KeyRepr::Raw(encoded), |v| KeyRepr::Int(i128::from(v))),
            _ => KeyRepr::Raw(encoded),
        }
    }
}

/// Decodes `bytes` as exactly one item with `f`, refusing trailing bytes.
pub(crate) fn decode_exact<'a, T>(
    bytes: &'a [u8],
    what: &'static str,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut r = Reader::new(bytes);
    let value = f(&mut r)?;
    r.finish(what)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(bytes: &[u8]) -> Result<(), Error> {
        decode_exact(bytes, "trailing bytes", |r| r.skip().map(|_| ()))
    }

    #[test]
    fn accepts_definite_items() {
        // {1: [h'00', "a"], -1: 24(h'')}
        skip_all(&[
            0xa2, 0x01, 0x82, 0x41, 0x00, 0x61, 0x61, 0x20, 0xd8, 0x18, 0x40,
        ])
        .unwrap();
    }

    #[test]
    fn rejects_indefinite_lengths() {
        for bytes in [
            &[0x9f, 0x01, 0xff][..],
            &[0xbf, 0x01, 0x02, 0xff],
            &[0x5f, 0x41, 0x00, 0xff],
        ] {
            let err = skip_all(bytes).unwrap_err();
            assert!(
                matches!(err, Error::Malformed { .. }),
                "{bytes:02x?}: {err}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_keys_even_when_encoded_differently() {
        // {1: 0, 1: 0}
        assert!(skip_all(&[0xa2, 0x01, 0x00, 0x01, 0x00]).is_err());
        // {1: 0, 0x18 0x01 (non-minimal 1): 0}
        assert!(skip_all(&[0xa2, 0x01, 0x00, 0x18, 0x01, 0x00]).is_err());
        // {"a": 0, "a": 0}
        assert!(skip_all(&[0xa2, 0x61, 0x61, 0x00, 0x61, 0x61, 0x00]).is_err());
        // distinct keys are fine: {1: 0, 2: 0}
        skip_all(&[0xa2, 0x01, 0x00, 0x02, 0x00]).unwrap();
    }

    #[test]
    fn rejects_trailing_bytes_and_lengths_beyond_input() {
        assert!(skip_all(&[0x01, 0x02]).is_err());
        assert!(skip_all(&[0x45, 0x00]).is_err());
        assert!(skip_all(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(skip_all(&[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn bounds_nesting_depth() {
        let mut deep = [0x81u8; 40];
        deep[39] = 0x00;
        assert!(skip_all(&deep).is_err());
        let mut shallow = [0x81u8; 8];
        shallow[7] = 0x00;
        skip_all(&shallow).unwrap();
    }

    #[test]
    fn bstr_with_header_includes_the_header() {
        let mut r = Reader::new(&[0x43, 1, 2, 3]);
        let (whole, content) = r.bstr_with_header().unwrap();
        assert_eq!(whole, &[0x43, 1, 2, 3]);
        assert_eq!(content, &[1, 2, 3]);
    }
}

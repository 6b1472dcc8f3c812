//! SUIT_Component_Identifier (manifest §8.4.5.1) and the component list.

use core::fmt;

use crate::cbor::{Reader, decode_exact};
use crate::error::Error;

/// The most segments a component identifier may have (a filesystem path has a handful).
pub const MAX_COMPONENT_SEGMENTS: u64 = 16;

/// A component identifier: a list of byte strings such as `[h'00']` or `['usr','bin','env']`.
///
/// Borrowed from the manifest; validated when the manifest is parsed.
#[derive(Clone, Copy)]
pub struct ComponentId<'a> {
    /// The encoded CBOR array.
    raw: &'a [u8],
}

impl ComponentId<'static> {
    /// The empty identifier `[]` (a dependency index without a prefix).
    pub const EMPTY: Self = Self { raw: &[0x80] };
}

impl<'a> ComponentId<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let start = r.position();
        let n = r.array()?;
        if n > MAX_COMPONENT_SEGMENTS {
            return Err(r.malformed("component identifier has too many segments"));
        }
        for _ in 0..n {
            r.bstr()?;
        }
        Ok(Self {
            raw: r.since(start),
        })
    }

    /// An identifier fixed when the program is built (e.g. a bootloader's own component),
    /// checked without the CBOR decoder, so that a device that needs nothing else of it links
    /// none: `raw` must be one CBOR array of at most [`MAX_COMPONENT_SEGMENTS`] byte strings
    /// of at most 23 bytes each, every head in its one-byte form (RFC 8949 §4.2.1, as the
    /// encoder writes them), nothing after it. `None` otherwise; [`Self::decode`] reads every
    /// form.
    pub const fn from_static(raw: &'static [u8]) -> Option<ComponentId<'static>> {
        let Some((&head, mut rest)) = raw.split_first() else {
            return None;
        };
        // 0x80..=0x97: an array of 0 to 23 items in the one-byte head.
        if head < 0x80 || head > 0x97 || (head - 0x80) as u64 > MAX_COMPONENT_SEGMENTS {
            return None;
        }
        let mut n = head - 0x80;
        while n > 0 {
            let Some((&h, tail)) = rest.split_first() else {
                return None;
            };
            if h < 0x40 || h > 0x57 {
                return None;
            }
            let Some((_, after)) = tail.split_at_checked((h - 0x40) as usize) else {
                return None;
            };
            rest = after;
            n -= 1;
        }
        if rest.is_empty() {
            Some(ComponentId { raw })
        } else {
            None
        }
    }

    /// Parses an encoded identifier (a CBOR array of byte strings).
    ///
    /// # Errors
    /// [`Error::Malformed`] if `raw` is not exactly one such array.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after component identifier", Self::read)
    }

    /// The encoded CBOR array.
    pub fn as_cbor(&self) -> &'a [u8] {
        self.raw
    }

    /// The segments, in order.
    pub fn segments(&self) -> Segments<'a> {
        let mut r = Reader::new(self.raw);
        let remaining = r.array().unwrap_or(0);
        Segments { r, remaining }
    }

    /// Whether this identifier equals the given segments.
    pub fn eq_segments<S: AsRef<[u8]>>(&self, other: &[S]) -> bool {
        let mut mine = self.segments();
        for s in other {
            if mine.next() != Some(s.as_ref()) {
                return false;
            }
        }
        mine.next().is_none()
    }
}

impl PartialEq for ComponentId<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.segments().eq(other.segments())
    }
}

impl Eq for ComponentId<'_> {}

impl fmt::Debug for ComponentId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Shows the identifier as `[h'00', 'usr']`: printable segments as text, others as hex.
impl fmt::Display for ComponentId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, seg) in self.segments().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let printable =
                !seg.is_empty() && seg.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
            match core::str::from_utf8(seg) {
                Ok(s) if printable => write!(f, "'{s}'")?,
                _ => {
                    f.write_str("h'")?;
                    for b in seg {
                        write!(f, "{b:02x}")?;
                    }
                    f.write_str("'")?;
                }
            }
        }
        f.write_str("]")
    }
}

/// Iterator over the segments of a [`ComponentId`].
#[derive(Debug)]
pub struct Segments<'a> {
    r: Reader<'a>,
    remaining: u64,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.r.bstr().ok()
    }
}

/// The manifest's component list (`suit-components`).
#[derive(Clone, Copy, Debug)]
pub struct Components<'a> {
    raw: &'a [u8],
    len: usize,
}

impl<'a> Components<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, limit: usize) -> Result<Self, Error> {
        let start = r.position();
        let n = r.array()?;
        if n == 0 {
            return Err(r.malformed("suit-components must list at least one component"));
        }
        let len = usize::try_from(n).unwrap_or(usize::MAX);
        if len > limit {
            return Err(Error::TooManyComponents {
                manifest: len,
                limit,
            });
        }
        for _ in 0..n {
            ComponentId::read(r)?;
        }
        Ok(Self {
            raw: r.since(start),
            len,
        })
    }

    pub(crate) fn empty() -> Self {
        Self {
            raw: &[0x80],
            len: 0,
        }
    }

    /// How many components are listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty (only a manifest without `suit-components`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The identifier at `index`.
    pub fn get(&self, index: usize) -> Option<ComponentId<'a>> {
        self.iter().nth(index)
    }

    /// The identifiers, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = ComponentId<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        let n = r.array().unwrap_or(0);
        (0..n).map_while(move |_| ComponentId::read(&mut r).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::ComponentId;

    #[test]
    fn from_static_accepts_what_decode_accepts_in_the_short_form() {
        for raw in [
            &[0x80][..],
            &[0x81, 0x41, 0x00],
            &[0x82, 0x43, b'u', b's', b'r', 0x40],
        ] {
            let fixed = ComponentId::from_static(raw).map(|c| c.as_cbor());
            assert_eq!(fixed, ComponentId::decode(raw).ok().map(|c| c.as_cbor()));
            assert_eq!(fixed, Some(raw));
        }
    }

    #[test]
    fn from_static_refuses_what_is_not_one_short_component_id() {
        for raw in [
            &[][..],
            &[0x81],                   // a segment missing
            &[0x81, 0x42, 0x00],       // a segment cut short
            &[0x81, 0x41, 0x00, 0x00], // a trailing byte
            &[0x81, 0x01],             // an integer segment
            &[0xa0],                   // a map
            &[
                0x91, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40,
                0x40, 0x40, 0x40, 0x40,
            ], // 17 segments
            &[0x81, 0x58, 0x01, 0x00], // a long head (decode reads it)
        ] {
            assert!(ComponentId::from_static(raw).is_none(), "{raw:02x?}");
        }
    }
}

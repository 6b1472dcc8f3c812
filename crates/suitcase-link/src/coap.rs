//! The CoAP client messages a sub-device sends over the gateway's serial link (RFC 7252 §3),
//! and the answers it reads: encode a confirmable request, parse a response, match it to the
//! request, and the retransmission schedule. No allocation, no panics; the caller owns every
//! buffer and the clock.
//!
//! Only what the firmware's client needs: the header, a token, the options Uri-Path (11),
//! Content-Format (12), Max-Age (14), Block2 (23, RFC 7959) and Size2 (28), and a payload.
//! Other options in a response are skipped (RFC 7252 §5.4.1: an unrecognized **critical**
//! option in a response makes it [`CoapError::CriticalOption`]).
//!
//! Why not a crate: `coap-lite` needs `alloc`; `coap-message`/`coap-numbers` are core-only
//! traits and constants without a message encoder or parser (that is
//! `coap-message-implementations`, another dependency for the ~250 lines here).

/// RFC 7252 §3: message types.
pub mod kind {
    /// Confirmable.
    pub const CON: u8 = 0;
    /// Non-confirmable.
    pub const NON: u8 = 1;
    /// Acknowledgement.
    pub const ACK: u8 = 2;
    /// Reset.
    pub const RST: u8 = 3;
}

/// RFC 7252 §12.1: codes as `class << 5 | detail`.
pub mod code {
    /// 0.01 GET.
    pub const GET: u8 = 0x01;
    /// 0.02 POST.
    pub const POST: u8 = 0x02;
    /// 2.04 Changed.
    pub const CHANGED: u8 = 0x44;
    /// 2.05 Content.
    pub const CONTENT: u8 = 0x45;
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: u8 = 0xA3;

    /// `c.dd` as RFC 7252 §3 writes it: (class, detail).
    pub const fn split(code: u8) -> (u8, u8) {
        (code >> 5, code & 0x1F)
    }
}

/// RFC 7252 §5.10 and RFC 7959 §2.1: option numbers.
pub mod option {
    /// Uri-Path.
    pub const URI_PATH: u16 = 11;
    /// Content-Format.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age.
    pub const MAX_AGE: u16 = 14;
    /// Block2 (RFC 7959 §2.1).
    pub const BLOCK2: u16 = 23;
    /// Size2 (RFC 7959 §4).
    pub const SIZE2: u16 = 28;
}

/// RFC 7252 §12.3: application/cbor.
pub const CF_CBOR: u16 = 60;

/// RFC 7252 §4.8: ACK_TIMEOUT, in milliseconds (the lower bound of the initial timeout; the
/// random factor is not applied: a point-to-point serial link has no other client to
/// desynchronise from).
pub const ACK_TIMEOUT_MS: u32 = 2000;
/// RFC 7252 §4.8: MAX_RETRANSMIT.
pub const MAX_RETRANSMIT: u8 = 4;

/// The timeout before retransmission `attempt` (0 for the first transmission): ACK_TIMEOUT
/// doubled at each retransmission (RFC 7252 §4.2).
pub const fn timeout_ms(attempt: u8) -> u32 {
    let shift = if attempt > MAX_RETRANSMIT {
        MAX_RETRANSMIT
    } else {
        attempt
    };
    ACK_TIMEOUT_MS << shift
}

/// Why a message could not be encoded or parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoapError {
    /// The output buffer is too small.
    NoRoom,
    /// A token longer than 8 bytes (RFC 7252 §3: TKL 9-15 are reserved).
    BadToken,
    /// Shorter than its header, token or an option says, or a reserved nibble (RFC 7252 §3.1).
    Malformed,
    /// Not version 1 (RFC 7252 §3).
    BadVersion,
    /// A Block2 value out of range (RFC 7959 §2.2: NUM below 2^20, SZX below 7).
    BadBlock,
    /// A critical option the client does not understand (RFC 7252 §5.4.1).
    CriticalOption(u16),
}

impl core::fmt::Display for CoapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoRoom => f.write_str("CoAP message does not fit the buffer"),
            Self::BadToken => f.write_str("CoAP token longer than 8 bytes"),
            Self::Malformed => f.write_str("CoAP message truncated or with a reserved nibble"),
            Self::BadVersion => f.write_str("CoAP version is not 1"),
            Self::BadBlock => f.write_str("Block2 value out of range (RFC 7959 §2.2)"),
            Self::CriticalOption(n) => write!(f, "unknown critical CoAP option {n}"),
        }
    }
}

/// A Block2 value (RFC 7959 §2.2): block number, more flag, size exponent (size 2^(SZX+4)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// NUM: the block number.
    pub num: u32,
    /// M: more blocks follow.
    pub more: bool,
    /// SZX: 0 to 6 (16 to 1024 bytes).
    pub szx: u8,
}

impl Block {
    /// The block size in bytes.
    pub const fn size(&self) -> usize {
        16 << (self.szx & 7)
    }

    /// The option value: `NUM << 4 | M << 3 | SZX`.
    pub const fn value(&self) -> u32 {
        (self.num << 4) | ((self.more as u32) << 3) | (self.szx as u32 & 7)
    }

    /// Decodes an option value (RFC 7959 §2.2: at most 3 bytes; SZX 7 is reserved).
    ///
    /// # Errors
    /// [`CoapError::BadBlock`].
    pub fn from_value(v: u32) -> Result<Self, CoapError> {
        let szx = (v & 7) as u8;
        if szx == 7 || v >> 24 != 0 {
            return Err(CoapError::BadBlock);
        }
        Ok(Self {
            num: v >> 4,
            more: v & 8 != 0,
            szx,
        })
    }
}

/// A confirmable request to encode.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// [`code::GET`] or [`code::POST`].
    pub code: u8,
    /// The message id (RFC 7252 §4.4).
    pub mid: u16,
    /// The token, 0 to 8 bytes (RFC 7252 §5.3.1).
    pub token: &'a [u8],
    /// The path, `/`-separated; each non-empty segment becomes one Uri-Path option.
    pub path: &'a str,
    /// Content-Format of the payload.
    pub content_format: Option<u16>,
    /// Block2: the block asked for, with the client's size (RFC 7959 §2.4).
    pub block2: Option<Block>,
    /// The body.
    pub payload: &'a [u8],
}

/// Writes the minimal big-endian bytes of `v` (RFC 7252 §3.2 uint) into `buf`, returns the
/// length.
fn uint(v: u32, buf: &mut [u8; 4]) -> usize {
    *buf = v.to_be_bytes();
    let skip = (v.leading_zeros() / 8) as usize;
    buf.copy_within(skip.min(4).., 0);
    4 - skip.min(4)
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), CoapError> {
        let end = self.at.checked_add(bytes.len()).ok_or(CoapError::NoRoom)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(CoapError::NoRoom)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    /// RFC 7252 §3.1: one option, delta and length with their extended forms.
    fn option(&mut self, last: &mut u16, number: u16, value: &[u8]) -> Result<(), CoapError> {
        let delta = number.checked_sub(*last).ok_or(CoapError::Malformed)?;
        *last = number;
        let len = u16::try_from(value.len()).map_err(|_| CoapError::NoRoom)?;
        let nibble = |n: u16| -> (u8, [u8; 2], usize) {
            match (u8::try_from(n), u8::try_from(n.saturating_sub(13))) {
                (Ok(small @ 0..=12), _) => (small, [0; 2], 0),
                (_, Ok(one)) => (13, [one, 0], 1),
                _ => (14, n.saturating_sub(269).to_be_bytes(), 2),
            }
        };
        let (d, dx, dn) = nibble(delta);
        let (l, lx, ln) = nibble(len);
        self.put(&[(d << 4) | l])?;
        self.put(dx.get(..dn).unwrap_or_default())?;
        self.put(lx.get(..ln).unwrap_or_default())?;
        self.put(value)
    }
}

/// Encodes `req` as a confirmable message into `out`; returns its length.
///
/// # Errors
/// [`CoapError::NoRoom`], [`CoapError::BadToken`].
pub fn encode_request(req: &Request<'_>, out: &mut [u8]) -> Result<usize, CoapError> {
    let tkl = u8::try_from(req.token.len())
        .ok()
        .filter(|n| *n <= 8)
        .ok_or(CoapError::BadToken)?;
    let mut w = Writer { out, at: 0 };
    let mid = req.mid.to_be_bytes();
    w.put(&[(1 << 6) | (kind::CON << 4) | tkl, req.code, mid[0], mid[1]])?;
    w.put(req.token)?;
    let mut last = 0;
    for segment in req.path.split('/').filter(|s| !s.is_empty()) {
        w.option(&mut last, option::URI_PATH, segment.as_bytes())?;
    }
    let mut buf = [0u8; 4];
    if let Some(cf) = req.content_format {
        let n = uint(u32::from(cf), &mut buf);
        w.option(
            &mut last,
            option::CONTENT_FORMAT,
            buf.get(..n).unwrap_or_default(),
        )?;
    }
    if let Some(block) = req.block2 {
        let n = uint(block.value(), &mut buf);
        w.option(&mut last, option::BLOCK2, buf.get(..n).unwrap_or_default())?;
    }
    if !req.payload.is_empty() {
        w.put(&[0xFF])?;
        w.put(req.payload)?;
    }
    Ok(w.at)
}

/// A parsed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The message type ([`kind`]).
    pub kind: u8,
    /// The code ([`code`]).
    pub code: u8,
    /// The message id.
    pub mid: u16,
    /// The token.
    pub token: &'a [u8],
    /// Content-Format.
    pub content_format: Option<u16>,
    /// Max-Age, seconds (RFC 7252 §5.10.5).
    pub max_age: Option<u32>,
    /// Block2.
    pub block2: Option<Block>,
    /// Size2: the whole representation's size (RFC 7959 §4).
    pub size2: Option<u32>,
    /// The payload.
    pub payload: &'a [u8],
}

impl Response<'_> {
    /// Whether this message answers the confirmable request `mid` with `token`: an ACK
    /// with the same message id (RFC 7252 §4.2) and the same token (§5.3.2), or a Reset of
    /// the message id (§4.2: the request was not understood).
    pub fn answers(&self, mid: u16, token: &[u8]) -> bool {
        (self.kind == kind::ACK && self.mid == mid && self.token == token)
            || (self.kind == kind::RST && self.mid == mid)
    }
}

fn uint_of(v: &[u8]) -> Result<u32, CoapError> {
    if v.len() > 4 {
        return Err(CoapError::Malformed);
    }
    Ok(v.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)))
}

/// Parses one CoAP message (RFC 7252 §3).
///
/// # Errors
/// [`CoapError`] naming what is wrong.
pub fn parse(msg: &[u8]) -> Result<Response<'_>, CoapError> {
    let [first, code, m0, m1, rest @ ..] = msg else {
        return Err(CoapError::Malformed);
    };
    if first >> 6 != 1 {
        return Err(CoapError::BadVersion);
    }
    let tkl = usize::from(first & 0x0F);
    if tkl > 8 {
        return Err(CoapError::BadToken);
    }
    let token = rest.get(..tkl).ok_or(CoapError::Malformed)?;
    let mut at = rest.get(tkl..).ok_or(CoapError::Malformed)?;
    let mut r = Response {
        kind: (first >> 4) & 3,
        code: *code,
        mid: u16::from_be_bytes([*m0, *m1]),
        token,
        content_format: None,
        max_age: None,
        block2: None,
        size2: None,
        payload: &[],
    };
    let mut number: u16 = 0;
    while let [head, tail @ ..] = at {
        if *head == 0xFF {
            if tail.is_empty() {
                return Err(CoapError::Malformed); // §3: a marker followed by nothing
            }
            r.payload = tail;
            break;
        }
        let mut tail = tail;
        let mut ext = |nibble: u8| -> Result<u16, CoapError> {
            match nibble {
                0..=12 => Ok(u16::from(nibble)),
                13 => {
                    let (b, t) = tail.split_first().ok_or(CoapError::Malformed)?;
                    tail = t;
                    Ok(u16::from(*b) + 13)
                }
                14 => {
                    let [a, b, t @ ..] = tail else {
                        return Err(CoapError::Malformed);
                    };
                    tail = t;
                    u16::from_be_bytes([*a, *b])
                        .checked_add(269)
                        .ok_or(CoapError::Malformed)
                }
                _ => Err(CoapError::Malformed),
            }
        };
        let delta = ext(head >> 4)?;
        let len = usize::from(ext(head & 0x0F)?);
        number = number.checked_add(delta).ok_or(CoapError::Malformed)?;
        let value = tail.get(..len).ok_or(CoapError::Malformed)?;
        at = tail.get(len..).ok_or(CoapError::Malformed)?;
        match number {
            option::CONTENT_FORMAT => {
                r.content_format =
                    Some(u16::try_from(uint_of(value)?).map_err(|_| CoapError::Malformed)?);
            }
            option::MAX_AGE => r.max_age = Some(uint_of(value)?),
            option::BLOCK2 => r.block2 = Some(Block::from_value(uint_of(value)?)?),
            option::SIZE2 => r.size2 = Some(uint_of(value)?),
            // ETag (4) and the rest are elective or not for responses; an odd number is
            // critical (§5.4.6).
            n if n % 2 == 1 => return Err(CoapError::CriticalOption(n)),
            _ => {}
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    #[test]
    fn a_get_with_block2_is_encoded_as_rfc_7252_writes_it() {
        let mut out = [0u8; 64];
        let req = Request {
            code: code::GET,
            mid: 0x1234,
            token: &[0xAB, 0xCD],
            path: "/d/payloads/r1/0",
            content_format: None,
            block2: Some(Block {
                num: 3,
                more: false,
                szx: 5,
            }),
            payload: &[],
        };
        let n = encode_request(&req, &mut out).unwrap();
        let want: &[u8] = &[
            0x42, 0x01, 0x12, 0x34, 0xAB, 0xCD, // CON, TKL 2, GET, mid, token
            0xB1, b'd', // Uri-Path (delta 11)
            0x08, b'p', b'a', b'y', b'l', b'o', b'a', b'd', b's', // Uri-Path
            0x02, b'r', b'1', 0x01, b'0', // Uri-Path x2
            0xC1, 0x35, // Block2 (delta 12): NUM 3, M 0, SZX 5
        ];
        assert_eq!(&out[..n], want);
    }

    #[test]
    fn a_response_with_block2_size2_and_payload_parses() {
        // ACK 2.05, mid 0x1234, token AB, Content-Format 42, Block2 NUM 1 M 1 SZX 2, Size2 300.
        let msg = [
            0x61, 0x45, 0x12, 0x34, 0xAB, 0xC1, 42, 0xB1, 0x1A, 0x52, 0x01, 0x2C, 0xFF, 1, 2, 3,
        ];
        let r = parse(&msg).unwrap();
        assert!(r.answers(0x1234, &[0xAB]));
        assert!(!r.answers(0x1235, &[0xAB]), "another message id");
        assert!(!r.answers(0x1234, &[0xAC]), "another token");
        assert_eq!(r.code, code::CONTENT);
        assert_eq!(r.content_format, Some(42));
        assert_eq!(
            r.block2,
            Some(Block {
                num: 1,
                more: true,
                szx: 2
            })
        );
        assert_eq!(r.size2, Some(300));
        assert_eq!(r.payload, &[1, 2, 3]);
    }

    #[test]
    fn long_options_use_the_extended_forms_and_round_trip() {
        let path = "/d/releases/0123456789abcdef0123456789abcdef/envelope";
        let body = [7u8; 300];
        let mut out = [0u8; 512];
        let n = encode_request(
            &Request {
                code: code::POST,
                mid: 1,
                token: &[1, 2, 3, 4],
                path,
                content_format: Some(CF_CBOR),
                block2: None,
                payload: &body,
            },
            &mut out,
        )
        .unwrap();
        // Uri-Path (11) is critical: in a response it is refused, not skipped (§5.4.1).
        assert_eq!(parse(&out[..n]), Err(CoapError::CriticalOption(11)));
        let mut small = [0u8; 40];
        assert_eq!(
            encode_request(
                &Request {
                    code: code::POST,
                    mid: 1,
                    token: &[],
                    path,
                    content_format: None,
                    block2: None,
                    payload: &body,
                },
                &mut small
            ),
            Err(CoapError::NoRoom)
        );
    }

    #[test]
    fn truncated_and_reserved_messages_are_refused_not_misread() {
        assert_eq!(parse(&[0x40, 0x45, 0]), Err(CoapError::Malformed));
        assert_eq!(parse(&[0x80, 0x45, 0, 0]), Err(CoapError::BadVersion));
        assert_eq!(parse(&[0x49, 0x45, 0, 0]), Err(CoapError::BadToken));
        // An option whose length runs past the end.
        assert_eq!(
            parse(&[0x60, 0x45, 0, 0, 0xC4, 1]),
            Err(CoapError::Malformed)
        );
        // Nibble 15 outside the payload marker.
        assert_eq!(
            parse(&[0x60, 0x45, 0, 0, 0xF1, 1]),
            Err(CoapError::Malformed)
        );
        // A payload marker with no payload (§3).
        assert_eq!(parse(&[0x60, 0x45, 0, 0, 0xFF]), Err(CoapError::Malformed));
        assert_eq!(Block::from_value(0x7), Err(CoapError::BadBlock));
    }

    #[test]
    fn retransmission_timeouts_double_and_are_bounded() {
        assert_eq!(timeout_ms(0), 2000);
        assert_eq!(timeout_ms(1), 4000);
        assert_eq!(timeout_ms(4), 32000);
        assert_eq!(timeout_ms(9), 32000);
    }
}

//! The serial framing of the gateway's CoAP link (docs/gateway.md §2): SLIP (RFC 1055) frames,
//! each holding one CoAP message (RFC 7252 §3) followed by its 16-bit frame check sequence
//! (the PPP FCS of RFC 1662 §C.2, least significant byte first).
//!
//! ```text
//! on the wire:  END  escape(message ‖ fcs_lo ‖ fcs_hi)  END
//!               0xC0 ; 0xC0 → 0xDB 0xDC, 0xDB → 0xDB 0xDD (RFC 1055) ; 0xC0
//! ```
//!
//! `core` only, no allocation, no panics: the same code runs on the sub-device (firmware/mps2-app). The
//! decoder holds at most `N` bytes of one frame (message and FCS); a longer frame, a bad
//! escape or a bad FCS drops that frame alone and the decoder finds the next END.

/// RFC 1055: the frame delimiter.
pub const END: u8 = 0xC0;
/// RFC 1055: the escape byte.
pub const ESC: u8 = 0xDB;
/// RFC 1055: END inside a frame, after ESC.
pub const ESC_END: u8 = 0xDC;
/// RFC 1055: ESC inside a frame, after ESC.
pub const ESC_ESC: u8 = 0xDD;

/// RFC 1662 §C.2: the FCS over a frame and its own FCS (sent low byte first) is this.
const GOOD_FCS: u16 = 0xF0B8;

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is longer than the decoder holds (the CoAP message and its FCS).
    TooLong,
    /// ESC followed by a byte other than ESC_END or ESC_ESC (RFC 1055).
    BadEscape,
    /// Fewer than the two FCS bytes and one byte of message.
    TooShort,
    /// The FCS does not match (RFC 1662 §C.2): a byte was corrupted on the line.
    BadFcs,
    /// `encode`: the output buffer is too small.
    NoRoom,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLong => "frame longer than the largest CoAP message this link carries",
            Self::BadEscape => "SLIP escape (0xDB) followed by a byte other than 0xDC or 0xDD",
            Self::TooShort => "frame shorter than a message and its 2-byte FCS",
            Self::BadFcs => "frame check sequence (RFC 1662 FCS-16) does not match",
            Self::NoRoom => "output buffer too small for the encoded frame",
        })
    }
}

/// The RFC 1662 §C.2 FCS-16 running value over `data`, from `fcs` (start with `0xFFFF`).
pub fn fcs16_update(mut fcs: u16, data: &[u8]) -> u16 {
    for b in data {
        fcs ^= u16::from(*b);
        for _ in 0..8 {
            fcs = if fcs & 1 == 1 {
                (fcs >> 1) ^ 0x8408
            } else {
                fcs >> 1
            };
        }
    }
    fcs
}

/// The FCS to send after `message` (RFC 1662 §C.2: the complement of the running value).
pub fn fcs16(message: &[u8]) -> u16 {
    fcs16_update(0xFFFF, message) ^ 0xFFFF
}

/// The most bytes `encode` writes for a message of `len` bytes: two ENDs and every byte of
/// the message and FCS escaped.
pub const fn encoded_max(len: usize) -> usize {
    2 + 2 * (len + 2)
}

/// Writes `message` as one frame into `out`; returns the bytes written.
///
/// # Errors
/// [`FrameError::NoRoom`] if `out` is too small ([`encoded_max`] always suffices).
pub fn encode(message: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let fcs = fcs16(message).to_le_bytes();
    let mut n = 0usize;
    let mut put = |b: u8, n: &mut usize| -> Result<(), FrameError> {
        let slot = out.get_mut(*n).ok_or(FrameError::NoRoom)?;
        *slot = b;
        *n += 1;
        Ok(())
    };
    put(END, &mut n)?;
    for b in message.iter().chain(fcs.iter()) {
        match *b {
            END => {
                put(ESC, &mut n)?;
                put(ESC_END, &mut n)?;
            }
            ESC => {
                put(ESC, &mut n)?;
                put(ESC_ESC, &mut n)?;
            }
            other => put(other, &mut n)?,
        }
    }
    put(END, &mut n)?;
    Ok(n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    Escaped,
    /// The frame is already bad; skip to the next END, then report why.
    Discard(FrameError),
}

/// A frame decoder holding at most `N` bytes of one frame (message + 2 FCS bytes).
#[derive(Debug)]
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    state: State,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            state: State::Normal,
        }
    }

    /// Takes one byte from the line. At an END that closes a frame, returns the CoAP
    /// message (FCS checked and removed) or why the frame was dropped; empty frames (two
    /// ENDs in a row, the END a sender puts first) return nothing.
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], FrameError>> {
        if byte == END {
            let len = core::mem::replace(&mut self.len, 0);
            let state = core::mem::replace(&mut self.state, State::Normal);
            return match state {
                State::Discard(e) => Some(Err(e)),
                // RFC 1055: ESC right before END is a bad escape.
                State::Escaped => Some(Err(FrameError::BadEscape)),
                State::Normal if len == 0 => None,
                State::Normal if len < 3 => Some(Err(FrameError::TooShort)),
                State::Normal => {
                    let frame = self.buf.get(..len)?;
                    if fcs16_update(0xFFFF, frame) != GOOD_FCS {
                        return Some(Err(FrameError::BadFcs));
                    }
                    Some(Ok(frame.get(..len - 2).unwrap_or_default()))
                }
            };
        }
        let data = match (self.state, byte) {
            (State::Discard(_), _) => return None,
            (State::Normal, ESC) => {
                self.state = State::Escaped;
                return None;
            }
            (State::Normal, b) => b,
            (State::Escaped, ESC_END) => END,
            (State::Escaped, ESC_ESC) => ESC,
            (State::Escaped, _) => {
                self.state = State::Discard(FrameError::BadEscape);
                return None;
            }
        };
        self.state = State::Normal;
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = data;
                self.len += 1;
            }
            None => self.state = State::Discard(FrameError::TooLong),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;

    fn frames<const N: usize>(d: &mut Decoder<N>, line: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        line.iter()
            .filter_map(|b| d.push(*b).map(|r| r.map(<[u8]>::to_vec)))
            .collect()
    }

    #[test]
    fn fcs16_is_rfc_1662s() {
        // CRC-16/X-25 (the PPP FCS) of "123456789" is 0x906E.
        assert_eq!(fcs16(b"123456789"), 0x906E);
        let mut framed = b"123456789".to_vec();
        framed.extend_from_slice(&0x906Eu16.to_le_bytes());
        assert_eq!(fcs16_update(0xFFFF, &framed), GOOD_FCS);
    }

    #[test]
    fn round_trip_with_every_special_byte() {
        let msg = [0x40, END, 1, ESC, END, ESC, 0xDC, 0xDD, 0];
        let mut out = [0u8; encoded_max(9)];
        let n = encode(&msg, &mut out).unwrap();
        let wire = &out[..n];
        assert_eq!(wire.first(), Some(&END));
        assert_eq!(wire.last(), Some(&END));
        assert!(!wire[1..n - 1].contains(&END));
        let mut d = Decoder::<64>::new();
        assert_eq!(frames(&mut d, wire), vec![Ok(msg.to_vec())]);
        // Two frames back to back, sharing nothing.
        let mut two = wire.to_vec();
        two.extend_from_slice(wire);
        assert_eq!(
            frames(&mut d, &two),
            vec![Ok(msg.to_vec()), Ok(msg.to_vec())]
        );
    }

    #[test]
    fn corrupted_byte_is_dropped_by_the_fcs_and_the_next_frame_survives() {
        let mut out = [0u8; 64];
        let n = encode(b"hello coap", &mut out).unwrap();
        let mut line = out[..n].to_vec();
        line[3] ^= 0x01;
        line.extend_from_slice(&out[..n]);
        let mut d = Decoder::<64>::new();
        assert_eq!(
            frames(&mut d, &line),
            vec![Err(FrameError::BadFcs), Ok(b"hello coap".to_vec())]
        );
    }

    #[test]
    fn oversized_frame_is_dropped_not_buffered() {
        let mut out = [0u8; 256];
        let n = encode(&[7u8; 100], &mut out).unwrap();
        let mut line = out[..n].to_vec();
        let m = encode(b"ok", &mut out).unwrap();
        line.extend_from_slice(&out[..m]);
        let mut d = Decoder::<32>::new();
        assert_eq!(
            frames(&mut d, &line),
            vec![Err(FrameError::TooLong), Ok(b"ok".to_vec())]
        );
    }

    #[test]
    fn bad_escape_and_short_frames_are_named() {
        let mut d = Decoder::<32>::new();
        assert_eq!(
            frames(&mut d, &[END, 1, ESC, 2, 3, END, 5, END, END, 9, ESC, END]),
            vec![
                Err(FrameError::BadEscape),
                Err(FrameError::TooShort),
                Err(FrameError::BadEscape)
            ]
        );
        assert_eq!(encode(b"abc", &mut [0u8; 4]), Err(FrameError::NoRoom));
    }
}

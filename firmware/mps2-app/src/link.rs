//! CoAP over the serial link to the gateway (docs/gateway.md §2): each request a confirmable
//! message (RFC 7252 §4.2) in one SLIP frame with its FCS-16 on UART1, retransmitted with
//! doubling timeouts up to MAX_RETRANSMIT times; the answer is the ACK with the same message
//! id and token. Codec and framing: `suitcase-link`, the crate the gateway decodes with.

use mps2_board::cycles;
use mps2_board::uart::Uart;
use suitcase_link::coap::{self, Block, Request};
use suitcase_link::slip::{self, Decoder};

/// The largest CoAP message on the link (docs/gateway.md §2).
pub const MAX_MESSAGE: usize = 1280;
/// The largest request this client sends (a check-in or a report with its detail).
const MAX_REQUEST: usize = 640;
/// Timer ticks per millisecond (CMSDK timer 0, 25 MHz SYSCLK).
const TICKS_PER_MS: u64 = 25_000;
/// The longest a session with the gateway may take (check-in, envelope, every payload block,
/// the reports, the 5.03 waits): past it every request fails with [`LinkError::SessionOver`]
/// and the application ends its run, rather than wait on a gateway that never completes.
pub const MAX_SESSION_MS: u64 = 300_000;

/// Why a request got no usable answer.
#[derive(Clone, Copy, Debug)]
pub enum LinkError {
    /// No answer after MAX_RETRANSMIT retransmissions (RFC 7252 §4.2).
    Timeout,
    /// The request does not fit a message.
    TooLarge,
    /// The answer is not a CoAP message this client reads.
    Coap(coap::CoapError),
    /// The gateway reset the exchange (RFC 7252 §4.2).
    Reset,
    /// The session took longer than [`MAX_SESSION_MS`].
    SessionOver,
    /// The answer's payload is larger than the caller's buffer (a block larger than asked
    /// for): refused, not truncated.
    Oversized,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer from the gateway after 4 retransmissions (is the gateway agent running on the socket?)"),
            Self::TooLarge => f.write_str("request larger than a link message"),
            Self::Coap(e) => write!(f, "bad answer: {e}"),
            Self::Reset => f.write_str("the gateway answered Reset"),
            Self::Oversized => f.write_str("answer larger than asked for (refused, not truncated)"),
            Self::SessionOver => f.write_str("the session with the gateway took longer than its 300 s; giving up until the next reset"),
        }
    }
}

/// An answer: its code, options, and the payload copied into the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// The response code (`coap::code`).
    pub code: u8,
    /// Block2, if present.
    pub block2: Option<Block>,
    /// Max-Age, if present.
    pub max_age: Option<u32>,
    /// Size2 (RFC 7959 §4: the whole representation's size), if present.
    pub size2: Option<u32>,
    /// Payload bytes copied.
    pub len: usize,
}

/// The client end of the link.
pub struct Link {
    uart: Uart,
    mid: u16,
    token: u32,
    decoder: Decoder<{ MAX_MESSAGE + 2 }>,
    clock: Clock,
    opened_ms: u64,
    repeat: bool,
}

/// Milliseconds since reset, from timer 0's 32-bit tick count (which wraps every 171.8 s,
/// `mps2_board::cycles::ticks`) extended to 64 bits in software: each reading adds the ticks
/// since the previous one, a wrapping difference, exact as long as readings are less than
/// 171 s apart (the link reads it in every wait loop, and nothing between two requests takes
/// that long: one block's flash write and decryption).
struct Clock {
    last: u32,
    total: u64,
}

impl Clock {
    fn new() -> Self {
        let last = cycles::ticks();
        Self {
            last,
            total: u64::from(last),
        }
    }

    fn now_ms(&mut self) -> u64 {
        let t = cycles::ticks();
        self.total += u64::from(t.wrapping_sub(self.last));
        self.last = t;
        self.total / TICKS_PER_MS
    }
}

impl Link {
    /// Opens UART1. The first message id and token come from the timer (RFC 7252 §4.4 asks
    /// for a random start; the board has no random source). On a socket link each power
    /// cycle is a new connection with its own duplicate cache at the gateway; on a tty link
    /// the cache outlives a reset (docs/gateway.md §2 says what that costs and the fix).
    pub fn open() -> Self {
        let seed = cycles::instructions();
        let mut clock = Clock::new();
        let opened_ms = clock.now_ms();
        Self {
            uart: Uart::link(),
            mid: (seed as u16) ^ 0x5A5A,
            token: (seed >> 8) as u32 ^ 0xC0A9_0000,
            decoder: Decoder::new(),
            clock,
            opened_ms,
            repeat: false,
        }
    }

    /// The next request reuses the last one's message id and token: the same request sent
    /// again after it timed out, which the gateway's duplicate cache acts on once
    /// (docs/gateway.md §2, RFC 7252 §4.5), so a report the gateway took but whose answer was
    /// lost is not queued twice. Not after a 5.03: that answer would be replayed. Call it only
    /// right before sending that same request again: the flag applies to the next request.
    pub fn repeat_next(&mut self) {
        self.repeat = true;
    }

    /// Milliseconds since the link opened.
    pub fn elapsed_ms(&mut self) -> u64 {
        self.clock.now_ms().saturating_sub(self.opened_ms)
    }

    /// Waits `ms` milliseconds (a 5.03's Max-Age); [`LinkError::SessionOver`] if that ends
    /// the session's time.
    pub fn sleep_ms(&mut self, ms: u64) -> Result<(), LinkError> {
        let until = self.clock.now_ms() + ms;
        while self.clock.now_ms() < until {}
        if self.elapsed_ms() > MAX_SESSION_MS {
            return Err(LinkError::SessionOver);
        }
        Ok(())
    }

    /// Sends one confirmable request and waits for its answer, retransmitting on timeouts.
    pub fn request(
        &mut self,
        code: u8,
        path: &str,
        content_format: Option<u16>,
        block2: Option<Block>,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Answer, LinkError> {
        // The repeat flag is consumed by this request whatever becomes of it (also when the
        // session is over), so it never reaches a later, different request.
        let repeat = core::mem::take(&mut self.repeat);
        if self.elapsed_ms() > MAX_SESSION_MS {
            return Err(LinkError::SessionOver);
        }
        if !repeat {
            self.mid = self.mid.wrapping_add(1);
            self.token = self.token.wrapping_add(1);
        }
        let token = self.token.to_be_bytes();
        let mut message = [0u8; MAX_REQUEST];
        let n = coap::encode_request(
            &Request {
                code,
                mid: self.mid,
                token: &token,
                path,
                content_format,
                block2,
                payload,
            },
            &mut message,
        )
        .map_err(|_| LinkError::TooLarge)?;
        let mut frame = [0u8; slip::encoded_max(MAX_REQUEST)];
        let len = slip::encode(message.get(..n).unwrap_or_default(), &mut frame)
            .map_err(|_| LinkError::TooLarge)?;
        for attempt in 0..=coap::MAX_RETRANSMIT {
            self.uart.write_all(frame.get(..len).unwrap_or_default());
            let deadline = self.clock.now_ms() + u64::from(coap::timeout_ms(attempt));
            while self.clock.now_ms() < deadline {
                let Some(byte) = self.uart.read_byte() else {
                    continue;
                };
                let Some(Ok(msg)) = self.decoder.push(byte) else {
                    continue; // not the end of a frame yet, or a dropped frame
                };
                let r = match coap::parse(msg) {
                    Ok(r) => r,
                    Err(e) => return Err(LinkError::Coap(e)),
                };
                if !r.answers(self.mid, &token) {
                    continue; // a late answer to an earlier request
                }
                if r.kind == coap::kind::RST {
                    return Err(LinkError::Reset);
                }
                let len = r.payload.len();
                let Some(dst) = out.get_mut(..len) else {
                    return Err(LinkError::Oversized);
                };
                dst.copy_from_slice(r.payload);
                return Ok(Answer {
                    code: r.code,
                    block2: r.block2,
                    max_age: r.max_age,
                    size2: r.size2,
                    len,
                });
            }
        }
        Err(LinkError::Timeout)
    }
}

//! The Block2 option (RFC 7959 §2.2): block number, more flag and size exponent, parsed here
//! rather than with coap-lite's `BlockValue`, whose number is a `u16` (RFC 7959 allows 20
//! bits: a 64 MiB payload at 64-byte blocks has more than 65,535 of them).

/// A Block2 (or Block1) option value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// The block number (at most [`MAX_NUM`]).
    pub(crate) num: u32,
    /// Whether more blocks follow.
    pub(crate) more: bool,
    /// The size exponent: blocks of `2^(szx + 4)` bytes, 16 to 1024.
    pub(crate) szx: u8,
}

/// RFC 7959 §2.2: NUM is at most 20 bits.
pub(crate) const MAX_NUM: u32 = (1 << 20) - 1;

/// Why a Block option was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// RFC 7959 §2.2: the option is 0 to 3 bytes.
    TooLong(usize),
    /// RFC 7959 §2.2: SZX 7 is reserved (BERT, RFC 8323, is for CoAP over TCP only).
    ReservedSize,
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLong(n) => write!(
                f,
                "the Block2 option is {n} bytes long; RFC 7959 §2.2 allows at most 3"
            ),
            Self::ReservedSize => f.write_str(
                "the Block2 size exponent is 7, which RFC 7959 §2.2 reserves (BERT is for CoAP over TCP); use 0 to 6 (16 to 1024 bytes)",
            ),
        }
    }
}

impl Block {
    /// Parses an option value (RFC 7959 §2.2: a uint of 0 to 3 bytes).
    pub(crate) fn parse(value: &[u8]) -> Result<Self, BlockError> {
        if value.len() > 3 {
            return Err(BlockError::TooLong(value.len()));
        }
        let v = value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = u8::try_from(v & 0x7).unwrap_or(0);
        if szx == 7 {
            return Err(BlockError::ReservedSize);
        }
        Ok(Self {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    /// The block size in bytes.
    pub(crate) fn size(self) -> u32 {
        1 << (u32::from(self.szx) + 4)
    }

    /// The option value, in the fewest bytes (RFC 7252 §3.2: uint without leading zeros).
    pub(crate) fn encode(self) -> Vec<u8> {
        let v = (self.num.min(MAX_NUM) << 4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        bytes.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
    }

    /// The size exponent for a block size the server prefers, at most `bytes` (16 to 1024).
    pub(crate) fn szx_for(bytes: u32) -> u8 {
        let mut szx = 0u8;
        while szx < 6 && (1u32 << (u32::from(szx) + 5)) <= bytes {
            szx += 1;
        }
        szx
    }
}

/// The byte range of block `num` of `size`-byte blocks in a representation of `total`
/// bytes, and whether more follow; `None` if the block starts at or beyond the end (the
/// server then answers 4.00 naming the last block) or its number is beyond 20 bits.
pub(crate) fn slice(num: u32, size: u32, total: u64) -> Option<(core::ops::Range<u64>, bool)> {
    if num > MAX_NUM {
        return None;
    }
    let start = u64::from(num) * u64::from(size);
    // A zero-length representation has one empty block 0.
    if start > total || (start == total && total != 0) {
        return None;
    }
    let end = (start + u64::from(size)).min(total);
    Some((start..end, end < total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_20_bit_numbers() {
        for num in [0, 1, 15, 16, 4095, 4096, 65_535, 65_536, MAX_NUM] {
            for szx in 0..7 {
                let b = Block {
                    num,
                    more: num % 2 == 0,
                    szx,
                };
                assert_eq!(Block::parse(&b.encode()).unwrap(), b, "{num} {szx}");
            }
        }
        assert_eq!(Block::parse(&[]).unwrap().num, 0);
    }

    #[test]
    fn refuses_reserved_size_and_long_values() {
        assert_eq!(Block::parse(&[0x07]), Err(BlockError::ReservedSize));
        assert_eq!(Block::parse(&[1, 2, 3, 4]), Err(BlockError::TooLong(4)));
    }

    #[test]
    fn slices_the_last_block_short() {
        assert_eq!(slice(0, 16, 40), Some((0..16, true)));
        assert_eq!(slice(2, 16, 40), Some((32..40, false)));
        assert_eq!(slice(3, 16, 40), None);
        assert_eq!(slice(2, 16, 32), None);
        assert_eq!(slice(0, 16, 0), Some((0..0, false)));
        assert_eq!(slice(MAX_NUM + 1, 16, u64::MAX), None);
    }

    #[test]
    fn picks_the_largest_size_that_fits() {
        assert_eq!(Block::szx_for(1024), 6);
        assert_eq!(Block::szx_for(1000), 5);
        assert_eq!(Block::szx_for(16), 0);
        assert_eq!(Block::szx_for(5000), 6);
    }
}

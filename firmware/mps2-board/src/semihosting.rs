//! ARM semihosting (the `bkpt 0xAB` calls QEMU answers with `-semihosting`): the command line,
//! the host file that persists the flash, and the exit status. With the feature `power-cut`
//! also the semihosting console (QEMU's stderr) and the power cut's own exit status
//! ([`CUT_STATUS`]), for `flash`'s power-cut hook.

const SYS_OPEN: u32 = 0x01;
const SYS_WRITE: u32 = 0x05;
const SYS_READ: u32 = 0x06;
const SYS_SEEK: u32 = 0x0A;
const SYS_FLEN: u32 = 0x0C;
const SYS_GET_CMDLINE: u32 = 0x15;
const SYS_EXIT: u32 = 0x18;
#[cfg(feature = "power-cut")]
const SYS_WRITE0: u32 = 0x04;
#[cfg(feature = "power-cut")]
const SYS_EXIT_EXTENDED: u32 = 0x20;
/// `ADP_Stopped_ApplicationExit`: QEMU exits with status 0.
const EXIT_SUCCESS: u32 = 0x2_0026;
/// `ADP_Stopped_RunTimeErrorUnknown`: QEMU exits with status 1.
const EXIT_FAILURE: u32 = 0x2_0023;
/// `fopen` mode "r+b".
const MODE_READ_WRITE_BINARY: u32 = 3;

/// A semihosting call. `arg` points at the call's parameter block (or is the parameter).
fn call(op: u32, arg: usize) -> isize {
    let ret: isize;
    // SAFETY: `bkpt 0xAB` traps to the debugger (QEMU's semihosting), which reads the
    // parameter block `arg` points to and writes only the buffers it names, all of which the
    // callers below own for the duration of the call.
    unsafe {
        core::arch::asm!("bkpt #0xab", inout("r0") op as isize => ret, in("r1") arg,
            options(nostack));
    }
    ret
}

/// The host refused a semihosting request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError;

/// A host file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File(isize);

impl File {
    /// Open `path` for reading and writing; it must exist.
    ///
    /// # Errors
    /// [`HostError`] if the path is too long or the host cannot open it.
    pub fn open(path: &[u8]) -> Result<Self, HostError> {
        let mut name = [0u8; 128];
        // The host reads a NUL-terminated string.
        name.get_mut(..path.len())
            .filter(|_| path.len() < 128)
            .ok_or(HostError)?
            .copy_from_slice(path);
        let block = [
            name.as_ptr() as usize,
            MODE_READ_WRITE_BINARY as usize,
            path.len(),
        ];
        match call(SYS_OPEN, block.as_ptr() as usize) {
            -1 => Err(HostError),
            handle => Ok(Self(handle)),
        }
    }

    /// The file's length in bytes.
    ///
    /// # Errors
    /// [`HostError`] if the host cannot tell.
    pub fn len(self) -> Result<usize, HostError> {
        let block = [self.0 as usize];
        usize::try_from(call(SYS_FLEN, block.as_ptr() as usize)).map_err(|_| HostError)
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// [`HostError`] if the seek fails or the file is shorter.
    pub fn read_at(self, offset: u32, buf: &mut [u8]) -> Result<(), HostError> {
        self.seek(offset)?;
        let block = [self.0 as usize, buf.as_mut_ptr() as usize, buf.len()];
        // The call returns how many bytes were *not* read.
        match call(SYS_READ, block.as_ptr() as usize) {
            0 => Ok(()),
            _ => Err(HostError),
        }
    }

    /// Write all of `data` at `offset`.
    ///
    /// # Errors
    /// [`HostError`] if the seek or the write fails.
    pub fn write_at(self, offset: u32, data: &[u8]) -> Result<(), HostError> {
        self.seek(offset)?;
        let block = [self.0 as usize, data.as_ptr() as usize, data.len()];
        match call(SYS_WRITE, block.as_ptr() as usize) {
            0 => Ok(()),
            _ => Err(HostError),
        }
    }

    fn seek(self, offset: u32) -> Result<(), HostError> {
        let block = [self.0 as usize, offset as usize];
        match call(SYS_SEEK, block.as_ptr() as usize) {
            0 => Ok(()),
            _ => Err(HostError),
        }
    }
}

/// The command line QEMU was given (`-kernel` file name, then `-append`), copied into `buf`.
///
/// # Errors
/// [`HostError`] if there is none or it does not fit.
pub fn cmdline(buf: &mut [u8]) -> Result<&[u8], HostError> {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    if call(SYS_GET_CMDLINE, block.as_mut_ptr() as usize) != 0 {
        return Err(HostError);
    }
    // The host wrote the length (without the NUL) back into the block.
    let len = block.get(1).copied().ok_or(HostError)?;
    buf.get(..len).ok_or(HostError)
}

/// The `key=value` argument of the command line, if present.
pub fn arg<'a>(cmdline: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    cmdline.split(|b| *b == b' ').find_map(|word| {
        word.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// Whether the word `flag` is on the command line.
pub fn flag(cmdline: &[u8], flag: &[u8]) -> bool {
    cmdline.split(|b| *b == b' ').any(|word| word == flag)
}

/// End the emulation: QEMU exits with status 0 (`success`) or 1.
pub fn exit(success: bool) -> ! {
    #[cfg(feature = "power-cut")]
    crate::flash::report_power_cut_count();
    let reason = if success { EXIT_SUCCESS } else { EXIT_FAILURE };
    // On 32-bit ARM the reason is passed directly, not in a block.
    call(SYS_EXIT, reason as usize);
    // Only reached without a semihosting host: wait for the watchdog of the test harness.
    loop {
        core::hint::spin_loop();
    }
}

/// QEMU's exit status when `flash` cuts the power (feature `power-cut`): neither 0 (a run
/// that ended normally), 1 (a failure, a panic), nor `timeout`'s 124 or 137.
#[cfg(feature = "power-cut")]
pub const CUT_STATUS: u32 = 86;

/// End the emulation as a power cut: QEMU exits with status [`CUT_STATUS`] (semihosting
/// v2 `SYS_EXIT_EXTENDED`; a QEMU without it exits with status 1).
#[cfg(feature = "power-cut")]
pub fn power_cut() -> ! {
    let block = [EXIT_SUCCESS as usize, CUT_STATUS as usize];
    call(SYS_EXIT_EXTENDED, block.as_ptr() as usize);
    exit(false)
}

/// Write `line` to the semihosting console (QEMU's stderr, next to the UART in the test logs).
#[cfg(feature = "power-cut")]
pub fn console(line: Line) {
    let mut line = line;
    // SYS_WRITE0 reads a NUL-terminated string; `Line` keeps a byte free for the NUL.
    if let Some(end) = line.buf.get_mut(line.len) {
        *end = 0;
        call(SYS_WRITE0, line.buf.as_ptr() as usize);
    }
}

/// A console line built without `core::fmt`; what does not fit is dropped.
#[cfg(feature = "power-cut")]
pub struct Line {
    buf: [u8; 128],
    len: usize,
}

#[cfg(feature = "power-cut")]
impl Line {
    /// An empty line.
    pub fn new() -> Self {
        Self {
            buf: [0; 128],
            len: 0,
        }
    }

    /// Append `s`.
    #[must_use]
    pub fn str(mut self, s: &str) -> Self {
        for &b in s.as_bytes() {
            self = self.byte(b);
        }
        self
    }

    /// Append `n` in decimal.
    #[must_use]
    pub fn dec(self, n: u32) -> Self {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + u8::try_from(n % 10).unwrap_or(0);
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        digits
            .get(at..)
            .unwrap_or_default()
            .iter()
            .fold(self, |line, &d| line.byte(d))
    }

    /// Append `n` as `0x` and eight hex digits.
    #[must_use]
    pub fn hex(self, n: u32) -> Self {
        (0..8).rev().fold(self.str("0x"), |line, i| {
            let nibble = (n >> (i * 4)) & 0xf;
            line.byte(
                b"0123456789abcdef"
                    .get(nibble as usize)
                    .copied()
                    .unwrap_or(b'?'),
            )
        })
    }

    fn byte(mut self, b: u8) -> Self {
        // The last byte stays free for the NUL.
        if self.len + 1 < self.buf.len()
            && let Some(slot) = self.buf.get_mut(self.len)
        {
            *slot = b;
            self.len += 1;
        }
        self
    }
}

#[cfg(feature = "power-cut")]
impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

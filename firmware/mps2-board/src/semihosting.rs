//! ARM semihosting (the `bkpt 0xAB` calls QEMU answers with `-semihosting`): the command line,
//! the host file that persists the flash, and the exit status.

const SYS_OPEN: u32 = 0x01;
const SYS_WRITE: u32 = 0x05;
const SYS_READ: u32 = 0x06;
const SYS_SEEK: u32 = 0x0A;
const SYS_FLEN: u32 = 0x0C;
const SYS_GET_CMDLINE: u32 = 0x15;
const SYS_EXIT: u32 = 0x18;
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
    let reason = if success { EXIT_SUCCESS } else { EXIT_FAILURE };
    // On 32-bit ARM the reason is passed directly, not in a block.
    call(SYS_EXIT, reason as usize);
    // Only reached without a semihosting host: wait for the watchdog of the test harness.
    loop {
        core::hint::spin_loop();
    }
}

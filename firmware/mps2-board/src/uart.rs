//! CMSDK APB UART0 at `0x4000_4000`: QEMU connects it to `-serial` (stdio with `-nographic`).

use core::fmt;

const BASE: usize = 0x4000_4000;
const DATA: usize = BASE;
const STATE: usize = BASE + 0x04;
const CTRL: usize = BASE + 0x08;
const BAUDDIV: usize = BASE + 0x10;
const STATE_TX_FULL: u32 = 1;
const CTRL_TX_ENABLE: u32 = 1;

/// The transmit side of UART0.
#[derive(Debug)]
pub struct Uart(());

impl Uart {
    /// Enable the transmitter. The divisor is irrelevant to QEMU but must be at least 16.
    pub fn init() -> Self {
        // SAFETY: BAUDDIV and CTRL are UART0's registers on this board (AN386 memory map);
        // nothing else drives UART0.
        unsafe {
            core::ptr::write_volatile(BAUDDIV as *mut u32, 16);
            core::ptr::write_volatile(CTRL as *mut u32, CTRL_TX_ENABLE);
        }
        Self(())
    }

    /// Send one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: STATE and DATA are UART0's registers; `Uart` exists only after `init`.
        unsafe {
            while core::ptr::read_volatile(STATE as *const u32) & STATE_TX_FULL != 0 {}
            core::ptr::write_volatile(DATA as *mut u32, u32::from(byte));
        }
    }

    /// Send a string (the bootloader's reports, without `core::fmt`).
    pub fn write_str(&mut self, s: &str) {
        s.bytes().for_each(|byte| self.write_byte(byte));
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Uart::write_str(self, s);
        Ok(())
    }
}

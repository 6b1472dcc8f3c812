//! CMSDK APB UARTs: UART0 at `0x4000_4000` (the console: QEMU's first `-serial`, stdio with
//! `-nographic`) and UART1 at `0x4000_5000` (the link to the gateway: the second `-serial`,
//! e.g. `-serial unix:PATH`, docs/gateway.md §2).
//!
//! Both are polled, without interrupts: QEMU's CMSDK UART holds one received byte
//! (`STATE.RXFULL`) and stops taking bytes from its character device until it is read, so
//! nothing is lost while the firmware is busy; the sender waits instead.

use core::fmt;

const UART0: usize = 0x4000_4000;
const UART1: usize = 0x4000_5000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1;
const STATE_RX_FULL: u32 = 2;
const CTRL_TX_ENABLE: u32 = 1;
const CTRL_RX_ENABLE: u32 = 2;

/// One UART (the transmit side, and the receive side for [`Uart::link`]).
#[derive(Debug)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// UART0, the console: enable the transmitter. The divisor is irrelevant to QEMU but must
    /// be at least 16.
    pub fn init() -> Self {
        Self::enable(UART0, CTRL_TX_ENABLE)
    }

    /// UART1, the serial link to the gateway: enable transmitter and receiver.
    pub fn link() -> Self {
        Self::enable(UART1, CTRL_TX_ENABLE | CTRL_RX_ENABLE)
    }

    fn enable(base: usize, ctrl: u32) -> Self {
        // SAFETY: BAUDDIV and CTRL are this UART's registers on this board (AN386 memory
        // map); nothing else drives it.
        unsafe {
            core::ptr::write_volatile((base + BAUDDIV) as *mut u32, 16);
            core::ptr::write_volatile((base + CTRL) as *mut u32, ctrl);
        }
        Self { base }
    }

    /// Send one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: STATE and DATA are this UART's registers; `Uart` exists only after `enable`.
        unsafe {
            while core::ptr::read_volatile((self.base + STATE) as *const u32) & STATE_TX_FULL != 0 {
            }
            core::ptr::write_volatile((self.base + DATA) as *mut u32, u32::from(byte));
        }
    }

    /// Send bytes.
    pub fn write_all(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.write_byte(*b));
    }

    /// Send a string (the bootloader's reports, without `core::fmt`).
    pub fn write_str(&mut self, s: &str) {
        self.write_all(s.as_bytes());
    }

    /// The received byte, if one is waiting (never blocks). Only [`Uart::link`] receives.
    pub fn read_byte(&mut self) -> Option<u8> {
        // SAFETY: STATE and DATA are this UART's registers; reading DATA takes the byte.
        unsafe {
            if core::ptr::read_volatile((self.base + STATE) as *const u32) & STATE_RX_FULL == 0 {
                return None;
            }
            u8::try_from(core::ptr::read_volatile((self.base + DATA) as *const u32) & 0xFF).ok()
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Uart::write_str(self, s);
        Ok(())
    }
}

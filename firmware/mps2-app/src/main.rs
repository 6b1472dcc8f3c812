//! The application the suitcase bootloader boots on `mps2-an386`.
//!
//! It prints its version (APP_VERSION at build time) and the boot state over UART0, then, if
//! it runs on trial, confirms itself through `suitcase-boot`'s [`Updater`] — unless the
//! command line says `no-confirm`, which stands for a failed self-test: the bootloader then
//! reverts the update at the next reset. It ends the QEMU run through semihosting (a power
//! cut, as far as the device is concerned).
//!
//! **Updates.** Built with the feature `gateway` and run with `gateway` on the command line,
//! it updates itself through the gateway agent over UART1 ([`gateway`]: check-in, envelope,
//! authentication before any payload byte, payload into slot B, staged; after the reset the
//! trial boot reports and confirms). Without the feature it downloads nothing: the test
//! harness stages updates into slot B from the host (`mps2-flash stage`), and the image stays
//! small (the bootloader's footprint figures boot it).
//!
//! Everything it says goes to UART0, prefixed `app:`; tests read it.

#![no_std]
#![no_main]

#[cfg(feature = "gateway")]
mod gateway;
#[cfg(feature = "gateway")]
mod link;
#[cfg(feature = "gateway")]
mod slots;
#[cfg(feature = "gateway")]
mod wire;

use core::fmt::Write;

use cortex_m_rt::entry;
use mps2_board::flash::Flash;
use mps2_board::layout::CONFIG;
use mps2_board::semihosting;
use mps2_board::uart::Uart;
use suitcase_boot::{ImageSlots, Phase, Updater};

const VERSION: &str = match option_env!("APP_VERSION") {
    Some(v) => v,
    None => "0.0.0-dev",
};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let mut uart = Uart::init();
    let _ = writeln!(uart, "app: panic");
    semihosting::exit(false)
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "gateway")]
    mps2_board::cycles::start(); // the link's clock
    // The update client's stack depth, measured on the target (mps2-board's stack paint).
    #[cfg(feature = "gateway")]
    mps2_board::stack::paint();
    let mut uart = Uart::init();
    let _ = writeln!(uart, "app: hello from version {VERSION}");
    let ok = run(&mut uart);
    #[cfg(feature = "gateway")]
    let _ = writeln!(
        uart,
        "app: stack peak {} bytes; static RAM {} bytes",
        mps2_board::stack::peak(),
        mps2_board::stack::static_ram(mps2_board::layout::RAM.0 as usize)
    );
    semihosting::exit(ok)
}

fn run(uart: &mut Uart) -> bool {
    let mut line = [0u8; 256];
    let cmdline = semihosting::cmdline(&mut line).unwrap_or_default();
    let path = semihosting::arg(cmdline, b"flash").unwrap_or(b"flash.bin");
    #[cfg(feature = "gateway")]
    let gateway = semihosting::flag(cmdline, b"gateway");
    // A test of the link clock's wrap handling: timer 0 (32 bits, 25 MHz) restarted 2 s
    // before it wraps, so that the session crosses the wrap (scripts/qemu-selfupdate.sh).
    #[cfg(feature = "gateway")]
    if semihosting::flag(cmdline, b"clock-wrap") {
        mps2_board::cycles::start_at(2 * 25_000_000);
        let _ = writeln!(uart, "app: clock-wrap: timer 0 wraps in 2000 ms");
    }
    // The bootloader loaded the flash in this power cycle; only the file is needed.
    let Ok(flash) = Flash::attach(path) else {
        let _ = writeln!(uart, "app: cannot open the flash file");
        return false;
    };
    let (a, b) = flash.slots();
    let mut updater = match Updater::new(CONFIG, [ImageSlots::new(a, b)], flash.state()) {
        Ok(updater) => updater,
        Err(error) => {
            let _ = writeln!(uart, "app: boot configuration: {error}");
            return false;
        }
    };
    let status = match updater.status() {
        Ok(status) => status,
        Err(error) => {
            let _ = writeln!(uart, "app: boot state unreadable: {error}");
            return false;
        }
    };
    let [minimum] = status.min_security_versions;
    let _ = writeln!(
        uart,
        "app: running from slot {}, phase {}, anti-rollback minimum {minimum}",
        status.running, status.phase
    );
    if status.phase != Phase::Trial {
        #[cfg(feature = "gateway")]
        if gateway {
            return gateway::update(uart, flash, status.last_failure);
        }
        return true;
    }
    if semihosting::flag(cmdline, b"no-confirm") {
        let _ = writeln!(
            uart,
            "app: on trial (boot {} of {}), not confirming: the bootloader reverts at the next reset",
            status.trial_boots, status.max_trial_boots
        );
        return true;
    }
    #[cfg(feature = "gateway")]
    let mut trial = if gateway {
        gateway::trial(uart, flash)
    } else {
        None
    };
    match updater.confirm() {
        Ok(()) => {
            let _ = writeln!(uart, "app: version {VERSION} confirmed");
            #[cfg(feature = "gateway")]
            if let Some(t) = trial.as_mut() {
                t.confirmed(uart);
            }
            true
        }
        Err(error) => {
            let _ = writeln!(uart, "app: confirm failed: {error}");
            false
        }
    }
}

//! Counting instructions on the emulated core: CMSDK APB timer 0 (`0x4000_0000`) as a free
//! running 32-bit down-counter.
//!
//! QEMU clocks the timer from the board's 25 MHz SYSCLK in virtual time. Under
//! `-icount shift=0` virtual time advances exactly 1 ns per executed instruction (and not at
//! all otherwise: semihosting calls and UART output cost only their own instructions), so one
//! timer tick is 40 instructions and [`instructions`] is an instruction count, deterministic
//! from run to run, to within one tick. Without `-icount` the count follows the host's clock
//! and means nothing.

const BASE: usize = 0x4000_0000;
const CTRL: usize = BASE;
const VALUE: usize = BASE + 0x04;
const RELOAD: usize = BASE + 0x08;
const CTRL_ENABLE: u32 = 1;
/// Instructions per timer tick under `-icount shift=0`: 1 ns per instruction, 40 ns per tick
/// of the 25 MHz SYSCLK.
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// Start the counter from `u32::MAX`.
pub fn start() {
    start_at(u32::MAX);
}

/// Start the counter at `value` ticks before it wraps: a test of the callers' wrap handling
/// (`mps2-app`'s `clock-wrap`) starts it close to the wrap.
pub fn start_at(value: u32) {
    // SAFETY: CTRL, VALUE and RELOAD are timer 0's registers on this board (AN386 memory
    // map); nothing else uses timer 0.
    unsafe {
        core::ptr::write_volatile(CTRL as *mut u32, 0);
        core::ptr::write_volatile(RELOAD as *mut u32, u32::MAX);
        core::ptr::write_volatile(VALUE as *mut u32, value);
        core::ptr::write_volatile(CTRL as *mut u32, CTRL_ENABLE);
    }
}

/// Timer ticks (25 MHz) since [`start`], modulo 2^32: the counter wraps every 171.8 s, so a
/// caller measures an interval as `ticks().wrapping_sub(earlier)`, exact for intervals under
/// 171 s, or extends the count in software by reading it at least that often (mps2-app's
/// link clock does).
pub fn ticks() -> u32 {
    // SAFETY: an aligned read of timer 0's VALUE register.
    let value = unsafe { core::ptr::read_volatile(VALUE as *const u32) };
    u32::MAX - value
}

/// Instructions since [`start`] (under `-icount shift=0`; at most 2^32 ticks, 171 s of
/// virtual time, before the counter wraps).
pub fn instructions() -> u64 {
    // SAFETY: an aligned read of timer 0's VALUE register.
    let value = unsafe { core::ptr::read_volatile(VALUE as *const u32) };
    u64::from(u32::MAX - value) * INSTRUCTIONS_PER_TICK
}

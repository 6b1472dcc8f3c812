//! Stack painting: fill the unused stack with a pattern, run something, and find the lowest
//! word it overwrote. That is the peak stack depth, measured on the target instruction set.

const PAINT: u32 = 0xC5C5_C5C5;
/// Left unpainted below the caller's stack pointer: `paint`'s own frame lives there.
const MARGIN: usize = 256;

unsafe extern "C" {
    /// End of .bss (and of the other static RAM sections): the stack may grow down to here
    /// (cortex-m-rt's link.x).
    static __sheap: u32;
    /// The initial stack pointer: the top of RAM (cortex-m-rt's link.x).
    static _stack_start: u32;
}

fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads SP into a register; no memory is touched.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack)) };
    sp
}

fn bottom() -> usize {
    // Only the symbol's address is used.
    core::ptr::addr_of!(__sheap) as usize
}

/// The top of the stack (the initial stack pointer).
pub fn top() -> usize {
    core::ptr::addr_of!(_stack_start) as usize
}

/// Paint the stack below the current stack pointer (less a margin) down to the end of static
/// RAM.
#[inline(never)]
pub fn paint() {
    let limit = stack_pointer().saturating_sub(MARGIN) & !3;
    let mut at = bottom().next_multiple_of(4);
    while at < limit {
        // SAFETY: `[bottom, sp - MARGIN)` is stack memory below every live frame: nothing
        // holds a reference into it, and the writes are word-aligned.
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// The peak stack depth since the last [`paint`], in bytes from the top of the stack: the
/// distance to the lowest word no longer holding the paint.
#[inline(never)]
pub fn peak() -> usize {
    let mut at = bottom().next_multiple_of(4);
    let top = top();
    while at < top {
        // SAFETY: an aligned read of stack RAM.
        if unsafe { core::ptr::read_volatile(at as *const u32) } != PAINT {
            break;
        }
        at += 4;
    }
    top - at
}

/// Bytes of static RAM (.data, .bss and .uninit): from the start of RAM to the stack's floor.
pub fn static_ram(ram_start: usize) -> usize {
    bottom().saturating_sub(ram_start)
}

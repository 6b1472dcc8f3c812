//! Everything the binary prints goes through here (`outln!`, `out!`, `errln!`), so that a
//! closed stdout is handled once for every command.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`suitcase … | head`)
//! fails with `BrokenPipe`, and `println!` turns that into a panic with a backtrace. Here a
//! closed stdout ends the process quietly with status 141 (128 + SIGPIPE, what a shell
//! reports for a program killed by SIGPIPE: the output was cut, the command did not finish);
//! any other stdout error is reported on stderr with status 2; stderr errors are ignored
//! (there is nowhere left to say anything). State on disk is crash-safe by design, so ending
//! at any write is safe. The crate warns on `print_stdout`/`print_stderr` (an error under
//! CI's `-D warnings`), and [`install`] adds a panic hook as a backstop for prints from code
//! outside this crate.

use std::fmt;
use std::io::Write as _;

/// The exit status when stdout is closed: 128 + SIGPIPE (13).
pub(crate) const CLOSED_STDOUT: i32 = 141;

/// Prints a line on stdout; see the module documentation.
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stdout without a newline; see the module documentation.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// Prints a line on stderr, ignoring errors.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout (flushed, so a closed pipe is noticed at this write); ends the process
/// when stdout is gone.
pub(crate) fn stdout(args: fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        closed(&e);
    }
}

/// Writes to stderr; errors are ignored.
pub(crate) fn stderr(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

fn closed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_STDOUT);
    }
    stderr(format_args!("error: cannot write to stdout: {e}\n"));
    std::process::exit(2);
}

/// The backstop: a panic raised by `print!`-style macros elsewhere (dependencies, code not
/// in this crate) on a closed stdout or stderr ends the process as [`stdout`] would,
/// without a panic message. Other panics keep the default hook.
pub(crate) fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's message: "failed printing to stdout: Broken pipe (os error 32)".
        if payload.starts_with("failed printing to std") && payload.contains("(os error 32)") {
            std::process::exit(CLOSED_STDOUT);
        }
        default(info);
    }));
}

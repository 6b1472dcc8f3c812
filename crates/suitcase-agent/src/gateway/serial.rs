//! A sub-device's link: the character device of a UART, a USB serial adapter or a
//! pseudo-terminal, opened non-blocking, switched to raw mode (no echo, no line editing, no
//! character translation: the SLIP frames pass byte for byte) and driven by tokio's reactor;
//! or a connection accepted on a UNIX stream socket (an emulator's serial port).

use std::path::Path;

use rustix::fs::{Mode, OFlags};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::unix::pipe;

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// An open link: for a serial device, two descriptors of the one open device (tokio
/// registers each once with its reactor), one for reading and one for writing.
pub struct Serial {
    rx: tokio::sync::Mutex<Reader>,
    tx: tokio::sync::Mutex<Writer>,
}

impl core::fmt::Debug for Serial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Serial")
    }
}

impl Serial {
    /// Opens `path` for reading and writing, as no controlling terminal, in raw mode.
    ///
    /// # Errors
    /// The OS error, e.g. the device does not exist (yet).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // A terminal is set raw; anything else (a FIFO in a test) is used as it is.
        if let Ok(mut t) = rustix::termios::tcgetattr(&fd) {
            t.make_raw();
            rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &t)?;
        }
        let write_fd = rustix::io::fcntl_dupfd_cloexec(&fd, 0)?;
        // The descriptors are non-blocking (opened so), as the unchecked constructors need.
        Ok(Self {
            rx: tokio::sync::Mutex::new(Box::new(pipe::Receiver::from_owned_fd_unchecked(fd)?)),
            tx: tokio::sync::Mutex::new(Box::new(pipe::Sender::from_owned_fd_unchecked(write_fd)?)),
        })
    }

    /// A connection accepted on a UNIX stream socket.
    pub fn from_stream(stream: tokio::net::UnixStream) -> Self {
        let (rx, tx) = stream.into_split();
        Self {
            rx: tokio::sync::Mutex::new(Box::new(rx)),
            tx: tokio::sync::Mutex::new(Box::new(tx)),
        }
    }

    /// Reads what has arrived, at most `buf.len()` bytes; 0 at the end of the link.
    ///
    /// # Errors
    /// The OS error (a pty whose other side closed answers EIO).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.rx.lock().await.read(buf).await
    }

    /// Writes all of `data`.
    ///
    /// # Errors
    /// The OS error.
    pub async fn write_all(&self, data: &[u8]) -> std::io::Result<()> {
        let mut tx = self.tx.lock().await;
        tx.write_all(data).await?;
        tx.flush().await
    }
}

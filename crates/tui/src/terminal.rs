//! Owning the terminal: raw mode, the alternate screen and a hidden cursor while `top` runs,
//! and the way back on every exit path.
//!
//! [`TerminalGuard`] restores the terminal when it drops (normal exit, `?` errors, unwinding).
//! A panic hook restores it too, before the panic message is printed, so that the message is
//! readable on the normal screen. Terminating signals are the caller's to turn into a quit
//! request (see [`crate::run`]'s `quit_requested`), so that a `kill` also goes through the
//! guard.
//!
//! When the terminal is gone (it hung up: see [`crate::keys`]), [`TerminalGuard::abandon`]
//! turns every later write into nothing, so that neither the restore nor ratatui's own drop
//! writes to a terminal that is no longer there.

use std::fs::File;
use std::io::{self, IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::layout::{Position, Rect, Size};
use ratatui::{Terminal, TerminalOptions, Viewport};

use crate::TuiError;

/// Whether the terminal is currently in `top`'s mode (shared with the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();
/// Set once the terminal is gone: [`TtyOut`] then writes nothing.
static GONE: AtomicBool = AtomicBool::new(false);

/// Standard output while it is the terminal `top` draws on; writes nothing once the terminal
/// is gone.
#[derive(Debug)]
pub struct TtyOut(Stdout);

impl Write for TtyOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if GONE.load(Ordering::SeqCst) {
            return Ok(buf.len());
        }
        self.0.write(buf).inspect_err(note_gone)
    }

    fn flush(&mut self) -> io::Result<()> {
        if GONE.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.0.flush().inspect_err(note_gone)
    }
}

/// A write error that means the terminal is gone is reported once; later writes (the restore,
/// ratatui's drop) then write nothing.
fn note_gone(e: &io::Error) {
    if is_gone(e) {
        GONE.store(true, Ordering::SeqCst);
    }
}

/// Whether a failed write means the terminal is gone: a hung-up terminal fails writes with
/// `EIO`, and one whose device went away with `ENXIO`.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EIO || code == nix::libc::ENXIO)
}

/// Fails with [`TuiError::NotATerminal`] unless standard output is a terminal. Checked before
/// attaching, so that `strobe top > file` fails at once and clearly. (Keys are read from
/// standard input, or from `/dev/tty` when that is not a terminal.)
pub fn check_terminal() -> Result<(), TuiError> {
    if io::stdout().is_terminal() {
        Ok(())
    } else {
        Err(TuiError::NotATerminal)
    }
}

/// The terminal in raw mode on the alternate screen, restored on drop.
pub struct TerminalGuard {
    /// The ratatui terminal to draw on.
    pub terminal: Terminal<CrosstermBackend<TtyOut>>,
    /// The controlling terminal, kept open for its size (see [`TerminalGuard::size`]).
    tty: Option<File>,
}

impl std::fmt::Debug for TerminalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalGuard")
    }
}

impl TerminalGuard {
    /// Checks for a terminal, installs the panic hook and switches the terminal over.
    pub fn enter() -> Result<TerminalGuard, TuiError> {
        check_terminal()?;
        install_panic_hook();
        enable_raw_mode().map_err(TuiError::Terminal)?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on, an error drops nothing yet: restore by hand.
        let tty = File::open("/dev/tty").ok();
        let entered = execute!(io::stdout(), EnterAlternateScreen, Hide).and_then(|()| {
            let backend = CrosstermBackend::new(TtyOut(io::stdout()));
            let size = match &tty {
                Some(tty) => tty_size(tty).map_or_else(|| backend.size(), Ok),
                None => backend.size(),
            }?;
            // A fixed viewport: ratatui does not ask the size at every draw (through
            // crossterm, which opens and closes `/dev/tty` each time); the event loop resizes
            // it when the size changes (`TerminalGuard::resize`).
            Terminal::with_options(
                backend,
                TerminalOptions {
                    viewport: Viewport::Fixed(Rect::from((Position::ORIGIN, size))),
                },
            )
        });
        match entered {
            Ok(terminal) => Ok(TerminalGuard { terminal, tty }),
            Err(e) => {
                restore();
                Err(TuiError::Terminal(e))
            }
        }
    }
}

impl TerminalGuard {
    /// The terminal's size now, as [`Terminal::size`] reads it (the controlling terminal's,
    /// else standard output's), from the `/dev/tty` opened by [`TerminalGuard::enter`]:
    /// crossterm opens and closes `/dev/tty` on every call, which costs tens of µs, and the
    /// event loop asks at every wake-up.
    pub fn size(&mut self) -> io::Result<Size> {
        match self.tty.as_ref().and_then(tty_size) {
            Some(size) => Ok(size),
            None => self.terminal.size(),
        }
    }

    /// Draws at `size` from now on (the next draw repaints everything).
    pub fn resize(&mut self, size: Size) -> io::Result<()> {
        self.terminal.resize(Rect::from((Position::ORIGIN, size)))
    }

    /// The terminal is gone: from now on nothing is written to it, and nothing is restored
    /// (there is no terminal left to restore).
    pub fn abandon(&mut self) {
        GONE.store(true, Ordering::SeqCst);
        ACTIVE.store(false, Ordering::SeqCst);
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// The size of the terminal `tty` is, if it says.
fn tty_size(tty: &File) -> Option<Size> {
    rustix::termios::tcgetwinsize(tty)
        .ok()
        .map(|w| Size::new(w.ws_col, w.ws_row))
}

/// Leaves raw mode and the alternate screen and shows the cursor, once (later calls do
/// nothing). Errors are ignored: there is no better terminal to report them on.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) && !GONE.load(Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

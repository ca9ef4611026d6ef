//! Reading keys from the terminal, and noticing when the terminal is gone.
//!
//! crossterm's event reader is not used: when its terminal hangs up (an SSH session that drops,
//! a tmux pane that is killed) `read` returns end of input or an error at once, every time,
//! and crossterm reads again in a loop that never returns, keeping a core busy. Here one
//! `poll(2)` waits for input with a timeout; a hang-up (`POLLHUP`, `POLLERR`), end of input or
//! a read error is reported as [`Input::Gone`] so that the caller can end `top` at once.
//! The bytes read are turned into crossterm [`KeyEvent`]s by [`parse`], which knows the keys
//! `top` uses (text, control keys, arrows, paging keys, Home/End, Escape).

use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Bytes read at a time; a burst of keys or a pasted text is read in several rounds.
const READ_SIZE: usize = 1024;
/// An unfinished escape sequence longer than this is garbage, not a key still arriving.
const LONGEST_SEQUENCE: usize = 32;

/// What one wait for input brought.
#[derive(Debug)]
pub enum Input {
    /// Keys typed (possibly none: the wait timed out, or only part of a key has arrived).
    Keys(Vec<KeyEvent>),
    /// The terminal is gone: it hung up, input ended or reading failed. Nothing more will
    /// come from it, and nothing should be written to it.
    Gone(Gone),
}

/// How the terminal was found gone.
#[derive(Debug)]
pub enum Gone {
    /// `poll` reported a hang-up or an error on the terminal.
    HungUp,
    /// `read` returned end of input.
    EndOfInput,
    /// `read` failed (on Linux a hung-up terminal fails reads with `EIO`).
    ReadError(Errno),
    /// Drawing on it failed with an error that means it is gone (`EIO`, `ENXIO`).
    WriteError(io::Error),
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::HungUp => f.write_str("the terminal hung up"),
            Gone::EndOfInput => f.write_str("the terminal's input ended"),
            Gone::ReadError(e) => write!(f, "reading the terminal failed ({e})"),
            Gone::WriteError(e) => write!(f, "writing to the terminal failed ({e})"),
        }
    }
}

/// Where keys come from: standard input when it is a terminal, else `/dev/tty` (as `top` may
/// run with its input redirected).
#[derive(Debug)]
enum Source {
    Stdin(io::Stdin),
    Tty(File),
}

/// The terminal's input side.
#[derive(Debug)]
pub struct KeyReader {
    source: Source,
    /// The start of a key whose other bytes have not arrived yet.
    pending: Vec<u8>,
}

impl KeyReader {
    /// Opens the terminal's input: standard input if it is a terminal, else `/dev/tty`.
    pub fn open() -> io::Result<KeyReader> {
        let stdin = io::stdin();
        let source = if stdin.is_terminal() {
            Source::Stdin(stdin)
        } else {
            Source::Tty(File::open("/dev/tty")?)
        };
        Ok(KeyReader {
            source,
            pending: Vec::new(),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::Stdin(s) => s.as_fd(),
            Source::Tty(f) => f.as_fd(),
        }
    }

    /// Waits up to `timeout` (at most about a minute) for input, or for one of `also` to be
    /// readable, and returns the keys read (none if it was one of `also`, or the time ran out),
    /// or that the terminal is gone. Fails only if `poll` itself fails.
    pub fn wait(&mut self, timeout: Duration, also: &[BorrowedFd<'_>]) -> io::Result<Input> {
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd<'_>> = std::iter::once(self.fd())
            .chain(also.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) | Err(Errno::EINTR) => return Ok(Input::Keys(Vec::new())),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let revents = fds
            .first()
            .and_then(PollFd::revents)
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Ok(Input::Gone(Gone::HungUp));
        }
        if !revents.contains(PollFlags::POLLIN) {
            return Ok(Input::Keys(Vec::new()));
        }
        let mut buf = [0u8; READ_SIZE];
        let n = match nix::unistd::read(self.fd(), &mut buf) {
            Ok(0) => return Ok(Input::Gone(Gone::EndOfInput)),
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => return Ok(Input::Keys(Vec::new())),
            Err(e) => return Ok(Input::Gone(Gone::ReadError(e))),
        };
        self.pending
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        let (keys, used) = parse(&self.pending);
        self.pending.drain(..used);
        if self.pending.len() > LONGEST_SEQUENCE {
            self.pending.clear();
        }
        Ok(Input::Keys(keys))
    }
}

/// The keys in `bytes`, and how many bytes they took: a key cut off at the end (part of an
/// escape sequence or of a UTF-8 character) is left for the next read. A lone Escape at the
/// end is the Escape key. Sequences for keys `top` has no use for are skipped.
pub fn parse(bytes: &[u8]) -> (Vec<KeyEvent>, usize) {
    let mut keys = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match one_key(bytes.get(at..).unwrap_or_default()) {
            Step::Key(key, len) => {
                keys.push(key);
                at += len;
            }
            Step::Skip(len) => at += len,
            Step::Incomplete => break,
        }
    }
    (keys, at)
}

/// The outcome of parsing at one position.
enum Step {
    /// A key of this many bytes.
    Key(KeyEvent, usize),
    /// This many bytes that are no key `top` knows.
    Skip(usize),
    /// The key has not fully arrived.
    Incomplete,
}

fn plain(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn one_key(bytes: &[u8]) -> Step {
    let Some(&first) = bytes.first() else {
        return Step::Incomplete;
    };
    let key = |code, len| Step::Key(plain(code), len);
    match first {
        b'\r' | b'\n' => key(KeyCode::Enter, 1),
        b'\t' => key(KeyCode::Tab, 1),
        0x7f | 0x08 => key(KeyCode::Backspace, 1),
        0x1b => escape(bytes),
        // Ctrl-A .. Ctrl-Z (raw mode passes Ctrl-C as a byte, not as SIGINT).
        0x01..=0x1a => Step::Key(
            KeyEvent::new(
                KeyCode::Char(char::from(first - 1 + b'a')),
                KeyModifiers::CONTROL,
            ),
            1,
        ),
        0x20..=0x7e => key(KeyCode::Char(char::from(first)), 1),
        0xc2..=0xf4 => utf8(bytes, first),
        _ => Step::Skip(1),
    }
}

/// A UTF-8 character starting with the lead byte `first`.
fn utf8(bytes: &[u8], first: u8) -> Step {
    let len = match first {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    let Some(seq) = bytes.get(..len) else {
        // Wait for the rest unless a byte already present cannot continue the character.
        return if bytes.iter().skip(1).all(|b| (0x80..=0xbf).contains(b)) {
            Step::Incomplete
        } else {
            Step::Skip(1)
        };
    };
    match std::str::from_utf8(seq).ok().and_then(|s| s.chars().next()) {
        Some(c) => Step::Key(plain(KeyCode::Char(c)), len),
        None => Step::Skip(1),
    }
}

/// Escape, or an escape sequence (`ESC [ ...` or `ESC O x`).
fn escape(bytes: &[u8]) -> Step {
    match bytes.get(1) {
        // Escape pressed on its own, or twice.
        None | Some(0x1b) => Step::Key(plain(KeyCode::Esc), 1),
        Some(b'[') => csi(bytes),
        Some(b'O') => match bytes.get(2) {
            None => Step::Incomplete,
            Some(&b) => match cursor_key(b) {
                Some(code) => Step::Key(plain(code), 3),
                None => Step::Skip(3),
            },
        },
        // Escape followed by a key (typed quickly, or Alt+key): the Escape on its own.
        Some(_) => Step::Key(plain(KeyCode::Esc), 1),
    }
}

/// The key of a cursor sequence's final byte (`ESC [ A`, `ESC O A`, `ESC [ 1 ; 5 A`).
fn cursor_key(b: u8) -> Option<KeyCode> {
    Some(match b {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        _ => return None,
    })
}

/// `ESC [ parameters intermediates final`.
fn csi(bytes: &[u8]) -> Step {
    let body = bytes.get(2..).unwrap_or_default();
    let Some(end) = body.iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return if body.iter().all(|b| (0x20..=0x3f).contains(b)) {
            Step::Incomplete
        } else {
            // Not a sequence after all: drop the introducer.
            Step::Skip(2)
        };
    };
    let len = 2 + end + 1;
    let params = body.get(..end).unwrap_or_default();
    let code = match body.get(end) {
        Some(b'~') => {
            let first = params.split(|&b| b == b';').next().unwrap_or_default();
            match first {
                b"1" | b"7" => Some(KeyCode::Home),
                b"4" | b"8" => Some(KeyCode::End),
                b"5" => Some(KeyCode::PageUp),
                b"6" => Some(KeyCode::PageDown),
                b"3" => Some(KeyCode::Delete),
                b"2" => Some(KeyCode::Insert),
                _ => None,
            }
        }
        Some(b'Z') => Some(KeyCode::BackTab),
        Some(&b) => cursor_key(b),
        None => None,
    };
    match code {
        Some(code) => Step::Key(plain(code), len),
        None => Step::Skip(len),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn codes(bytes: &[u8]) -> (Vec<KeyCode>, usize) {
        let (keys, used) = parse(bytes);
        (keys.into_iter().map(|k| k.code).collect(), used)
    }

    #[test]
    fn text_and_control_keys() {
        let (keys, used) = parse(b"q/\r\x7f\x03");
        assert_eq!(used, 5);
        assert_eq!(keys[0], plain(KeyCode::Char('q')));
        assert_eq!(keys[1], plain(KeyCode::Char('/')));
        assert_eq!(keys[2], plain(KeyCode::Enter));
        assert_eq!(keys[3], plain(KeyCode::Backspace));
        assert_eq!(
            keys[4],
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        );
    }

    #[test]
    fn escape_sequences_of_both_kinds() {
        let bytes = b"\x1b[A\x1bOB\x1b[5~\x1b[6~\x1b[H\x1b[4~\x1b[1;5C";
        let (keys, used) = codes(bytes);
        assert_eq!(
            keys,
            [
                KeyCode::Up,
                KeyCode::Down,
                KeyCode::PageUp,
                KeyCode::PageDown,
                KeyCode::Home,
                KeyCode::End,
                KeyCode::Right
            ]
        );
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn a_lone_escape_is_the_key_and_a_cut_sequence_waits() {
        assert_eq!(codes(b"\x1b"), (vec![KeyCode::Esc], 1));
        assert_eq!(codes(b"\x1b\x1b"), (vec![KeyCode::Esc, KeyCode::Esc], 2));
        assert_eq!(codes(b"j\x1b[5"), (vec![KeyCode::Char('j')], 1));
        assert_eq!(codes(b"\x1bO"), (vec![], 0));
        // The rest arrives: the whole sequence is one key.
        assert_eq!(codes(b"\x1b[5~"), (vec![KeyCode::PageUp], 4));
    }

    #[test]
    fn unknown_sequences_are_skipped_whole() {
        // F5, a focus report, then a key.
        assert_eq!(codes(b"\x1b[15~\x1b[Iq"), (vec![KeyCode::Char('q')], 9));
    }

    #[test]
    fn utf8_text_even_when_cut() {
        assert_eq!(codes("é".as_bytes()), (vec![KeyCode::Char('é')], 2));
        assert_eq!(codes(&"€".as_bytes()[..2]), (vec![], 0));
        // A lead byte followed by one that cannot continue it is dropped.
        assert_eq!(codes(b"\xe2q"), (vec![KeyCode::Char('q')], 2));
    }
}

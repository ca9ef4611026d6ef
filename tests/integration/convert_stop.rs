//! `strobe convert` stopped by a signal mid-spill: it exits at once with 128 + the signal's
//! number and one line saying so, leaving no spill directory, no temporary output file and no
//! output.
//!
//! The raw recording is written into convert's standard input (`/dev/stdin` as its input) as it
//! is generated: random paths through 16 functions (`crates/output/src/paths_stream.rs`),
//! nearly every sample a new stack. Once 2 MiB have gone into the pipe, convert has read all
//! but what a pipe and its read buffer hold (1 MiB + 64 KiB at most) and so has spilled (the
//! budget is 64 KiB), and it cannot have finished, since its input has not ended: the
//! directory is asserted then, not waited for.

use crate::record::strobe_cmd;
use crate::record_spill::spill_files_in;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use strobe_aggregate::{Aggregator, Metadata, SampleFlags};
use strobe_output::RawWriter;
use strobe_testkit::TempDir;

#[path = "../../crates/output/src/paths_stream.rs"]
mod paths_stream;

/// Bytes of recording written into convert's input before the signal.
const FED: u64 = 2 << 20;

/// A writer that counts the bytes it passes on.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Converts to `out` a recording fed through a pipe, stops it with `sig` once it has spilled,
/// and checks what it leaves.
/// All `child`'s standard error says (until it closes it).
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn stopped_mid_spill(out: &Path, sig: Signal) {
    let dir = out.parent().unwrap();
    let mut child = strobe_cmd(&["convert", "/dev/stdin", "-o", out.to_str().unwrap()])
        .env("STROBE_SPILL_BYTES", "65536")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = Counted {
        inner: child.stdin.take().unwrap(),
        bytes: 0,
    };
    let mut w = RawWriter::new(input, &Metadata::default()).unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    let mut a = Aggregator::new();
    let mut n = 0u64;
    while w.get_ref().bytes < FED {
        let (thread, frames) = (
            paths_stream::two_threads(n),
            paths_stream::path_frames(&names, n, 12),
        );
        let s = a
            .record(&thread, &frames, SampleFlags::HOLDS_GIL, n * 1000, 1000)
            .unwrap();
        w.append(a.tables(), &[s]).unwrap();
        if n % 1000 == 999 {
            // A failed write here means convert stopped early: its stderr says why.
            if let Err(e) = w.flush() {
                panic!("convert stopped reading ({e}): {}", stderr_of(&mut child));
            }
        }
        n += 1;
    }
    assert_eq!(
        spill_files_in(dir).len(),
        1,
        "{sig}: no spill directory after {n} samples"
    );
    assert!(!out.exists());

    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let status = child.wait().unwrap();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(128 + sig as i32), "{status}: {err}");
    let said = format!(
        "strobe: convert interrupted by {}: stopped at once, leaving no spill files and no \
         partial {}\n",
        sig.as_str(),
        out.display()
    );
    assert_eq!(err, said);
    assert_eq!(entries(dir), Vec::<String>::new(), "{sig}");
    // The pipe's reader is gone: the writer is dropped unflushed.
    drop(w);
}

#[test]
fn convert_stopped_mid_spill_exits_leaving_nothing() {
    let dir = TempDir::new();
    // A folded format (sorted runs in the spill directory) and a streamed one (spool files).
    stopped_mid_spill(&dir.path().join("paths.txt"), Signal::SIGINT);
    stopped_mid_spill(&dir.path().join("paths.pb.gz"), Signal::SIGTERM);
}

//! The strobe command line.

use std::process::ExitCode;

/// Run strobe with the process arguments.
pub fn main() -> ExitCode {
    eprintln!("strobe: not implemented yet");
    ExitCode::FAILURE
}

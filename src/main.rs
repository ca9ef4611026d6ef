//! The `strobe` executable: everything lives in `crates/cli`.
fn main() -> std::process::ExitCode {
    strobe_cli::main()
}

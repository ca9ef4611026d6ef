//! `--mode cpu|wall|gil` and the flags it stands for: one raw recording, converted both ways,
//! gives the same profile.

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::{convert_to, record_pid, run_strobe};

#[test]
fn modes_and_their_old_flags_give_the_same_profile() {
    // Two threads sorting (running, taking turns with the GIL), the main thread blocked.
    let script = Script::new(&Interp::pyenv("3.12.1"), "native_busy.py");
    let mut target = Announced::start(script.command().arg("2"));
    let dir = TempDir::new();
    let raw = dir.path().join("all.raw");
    record_pid(target.pid, &["--duration", "1"], &raw);
    target.close_stdin();
    let convert = |flags: &[&str], name: &str| -> String {
        std::fs::read_to_string(convert_to(&raw, flags, dir.path().join(name))).unwrap()
    };
    let cpu = convert(&["--mode", "cpu"], "cpu.txt");
    assert_eq!(cpu, convert(&[], "default.txt"));
    let wall = convert(&["--mode", "wall"], "wall.txt");
    assert_eq!(wall, convert(&["--idle"], "idle.txt"));
    let gil = convert(&["--mode", "gil"], "gil.txt");
    assert_eq!(gil, convert(&["--gil"], "gil-flag.txt"));
    // The modes do differ: wall has the blocked main thread, cpu does not.
    let main = format!("<module> ({}:", script.in_target);
    assert!(wall.contains(&main), "{wall}");
    assert!(!cpu.contains(&main), "{cpu}");
    // And they cannot be mixed with the flags they replace.
    let mixed = run_strobe(&[
        "convert",
        raw.to_str().unwrap(),
        "-o",
        dir.path().join("x.txt").to_str().unwrap(),
        "--mode",
        "wall",
        "--gil",
    ]);
    assert_eq!(mixed.status.code(), Some(2));
}

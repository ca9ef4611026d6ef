//! A thread renamed while `record` runs: its samples carry its old name up to the rename and
//! its new one after, as one kernel thread, once strobe's periodic look at `threading`'s
//! names has seen the change (at least once a second; crates/sampler/src/names.rs).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use strobe_output::{RawEvent, RawStream};

use crate::harness::{Announced, Interp, Script, TempDir};
use crate::record::spawn_recording;
use crate::record_value::{end_after_runs, wait_for_sampler_runs};

/// The target's next stdout line, which must start with `word`.
fn expect_line(target: &mut Announced, word: &str) -> String {
    let mut line = String::new();
    target.ready.stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with(word), "expected {word}, got {line:?}");
    line
}

strobe_testkit::per_interpreter! {
    fn renamed_while_recording(interp) for [
        pyenv_2_7, pyenv_3_10, pyenv_3_12, debian_3_11, sid_3_14, sid_3_15_debug
    ] {
        let script = Script::new(&Interp::from(interp), "thread_rename.py");
        let mut target = Announced::start(&mut script.command());
        let dir = TempDir::new();
        let raw = dir.path().join("rename.raw");
        let pid = target.pid.to_string();
        let (mut strobe, mut err, mut stderr) = spawn_recording(&[
            "record", "--pid", &pid, "--rate", "200", "-o", raw.to_str().unwrap(),
        ]);
        let strobe_pid = i32::try_from(strobe.id()).unwrap();
        // Sampled under its first name, then renamed; "LATER" comes 1.5 s after the rename,
        // past strobe's next look at the names, and strobe samples on before it is stopped.
        wait_for_sampler_runs(strobe_pid, 20);
        let stdin = target.ready.child.stdin.as_mut().unwrap();
        stdin.write_all(b"rename\n").unwrap();
        stdin.flush().unwrap();
        expect_line(&mut target, "RENAMED ");
        expect_line(&mut target, "LATER");
        let ran = wait_for_sampler_runs(strobe_pid, 0);
        end_after_runs(&mut strobe, &mut err, &mut stderr, ran + 20);
        target.close_stdin();

        // The worker's samples in time order: (timestamp, kernel id, name).
        let mut stream = RawStream::open(&raw).unwrap();
        let mut worker: BTreeMap<(u64, u64), String> = BTreeMap::new();
        while let Some((tables, event)) = stream.next_event().unwrap() {
            let RawEvent::Sample(s) = event else {
                panic!("a recording holds samples: {event:?}")
            };
            let thread = tables.thread(s.thread).expect("a sample's thread is defined");
            let name = thread.name.map(|n| tables.str(n).to_string()).unwrap_or_default();
            if name.starts_with("worker-") {
                worker.insert((s.timestamp_ns, thread.os_tid), name);
            }
        }
        let tids: Vec<u64> = worker.keys().map(|&(_, tid)| tid).collect();
        assert!(
            tids.windows(2).all(|w| w[0] == w[1]),
            "one kernel thread under both names: {tids:?}"
        );
        let names: Vec<&str> = worker.values().map(String::as_str).collect();
        let before = names.iter().take_while(|&&n| n == "worker-before").count();
        assert!(before > 0, "no sample under the first name\n{stderr}");
        assert!(
            names[before..].iter().all(|&n| n == "worker-after"),
            "after the first sample under the new name, only the new name: {:?}",
            &names[before..]
        );
        assert!(
            names.len() > before,
            "no sample under the new name of {} samples\n{stderr}",
            names.len()
        );
    }
}

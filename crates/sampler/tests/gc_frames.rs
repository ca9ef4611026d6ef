//! `<GC>` frames through the sampler against a real interpreter (pyenv 3.12) that does nothing
//! but collect a large heap of live reference cycles: with `SamplerConfig::gc_frames` (the
//! default) most samples end in `<GC>`; without it (`top --no-gc`) none does, and the samples
//! end on the line that called `gc.collect()` instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_aggregate::{FrameKind, Sample, Tables};
use strobe_sampler::SamplerConfig;
use strobe_target::Target;
use strobe_testkit::{interpreters, Ready};

mod support;
use support::sample_until;

const SCRIPT: &str = r#"import gc, sys

class Node(object):
    __slots__ = ("other",)

heap = []
for i in range(200000):
    a, b = Node(), Node()
    a.other, b.other = b, a
    heap.append(a)

def collect_forever():
    while True:
        gc.collect()

sys.stdout.write("READY\n")
sys.stdout.flush()
collect_forever()
"#;

/// Sample `pid` at 200 Hz until at least 40 samples came; every sample and the tables they
/// refer to.
fn record(pid: i32, gc_frames: bool) -> (Vec<Sample>, Tables) {
    let cfg = SamplerConfig {
        rate_hz: 200.0,
        gc_frames,
        ..SamplerConfig::default()
    };
    let (samples, tables, _) = sample_until(Target::attach(pid).unwrap(), cfg, 40);
    (samples, tables)
}

/// The innermost frame of a sample: (kind, function).
fn leaf(t: &Tables, s: &Sample) -> (FrameKind, String) {
    let f = t.frame(*t.stack(s.stack).last().unwrap()).unwrap();
    (f.kind, t.str(f.function).to_string())
}

#[test]
fn gc_frames_on_top_of_the_collecting_line_unless_turned_off() {
    let python = interpreters::pyenv_version("3.12.1").require().path();
    let target = Ready::python_script(python.to_str().unwrap(), "gc-frames", SCRIPT, &[]);

    let (samples, t) = record(target.pid(), true);
    let gc = samples
        .iter()
        .filter(|s| leaf(&t, s) == (FrameKind::Interpreter, "<GC>".to_string()))
        .count();
    assert!(gc * 4 >= samples.len() * 3, "{gc} of {}", samples.len());
    for s in &samples {
        let stack = t.stack(s.stack);
        let below = stack
            .len()
            .checked_sub(2)
            .map(|i| t.frame(stack[i]).unwrap());
        if leaf(&t, s).0 == FrameKind::Interpreter {
            assert_eq!(t.str(below.unwrap().function), "collect_forever");
        }
    }

    let (samples, t) = record(target.pid(), false);
    assert!(t.frames().all(|(_, f)| f.kind != FrameKind::Interpreter));
    let on_line = samples
        .iter()
        .filter(|s| leaf(&t, s).1 == "collect_forever")
        .count();
    assert!(
        on_line * 4 >= samples.len() * 3,
        "{on_line} of {}",
        samples.len()
    );
}

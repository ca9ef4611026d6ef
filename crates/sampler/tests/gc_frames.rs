//! `<GC>` frames through the sampler against a real interpreter (pyenv 3.12) that does nothing
//! but collect a large heap of live reference cycles: with `SamplerConfig::gc_frames` (the
//! default) most samples end in `<GC>`; without it (`top --no-gc`) none does, and the samples
//! end on the line that called `gc.collect()` instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strobe_aggregate::{FrameKind, Sample, Tables};
use strobe_sampler::{start, SamplerConfig};
use strobe_target::Target;
use strobe_testkit::{interpreters, Ready};

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

/// Sample `pid` at 200 Hz until at least [`SAMPLES`] samples came (however few rounds a
/// loaded machine allows per second); every sample and the tables they refer to.
fn record(pid: i32, gc_frames: bool) -> (Vec<Sample>, Tables) {
    let target = Target::attach(pid).unwrap();
    let (side, mut agg) = strobe_aggregate::pipeline(1 << 16);
    let cfg = SamplerConfig {
        rate_hz: 200.0,
        gc_frames,
        ..SamplerConfig::default()
    };
    let handle = start(target, None, cfg, side).unwrap();
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples.len() < SAMPLES {
        assert!(
            Instant::now() < deadline,
            "{} samples in 60 s",
            samples.len()
        );
        samples.extend(agg.drain().unwrap().samples);
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.stop();
    handle.join().unwrap();
    while !agg.finished() {
        samples.extend(agg.drain().unwrap().samples);
    }
    (samples, agg.tables().clone())
}

/// Samples taken of each configuration.
const SAMPLES: usize = 40;

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

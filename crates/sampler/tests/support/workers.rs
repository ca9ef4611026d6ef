//! What the native tests with named worker threads share: each worker sample's merged stack
//! checked whole (its loop inside `thread_run` inside `start_thread`, outermost first), and
//! the samples that kept only their Python frames, or kept them outside a cut-short native
//! stack, counted.

use strobe_aggregate::{FrameKind, Sample, Tables};
use strobe_native::TRUNCATED_FRAME;
use strobe_testkit::{Interpreter, Ready};

/// The two workers of these tests' targets: (thread name, its loop function).
pub const TWO_WORKERS: [(&str, &str); 2] = [("spin-a", "work_a"), ("spin-b", "work_b")];

/// A target script: `defs` (which defines `work_a` and `work_b`, and imports `os`, `sys`,
/// `threading`), then the two workers started as [`TWO_WORKERS`], then READY, then a wait
/// for ever.
pub fn two_workers_script(defs: &str) -> String {
    format!(
        "{defs}
for name, f in ((\"spin-a\", work_a), (\"spin-b\", work_b)):
    threading.Thread(target=f, name=name, daemon=True).start()
sys.stdout.write(\"READY\\n\")
sys.stdout.flush()
r, w = os.pipe()
os.read(r, 1)
"
    )
}

/// The target of `defs` (see [`two_workers_script`]) started under `interp`'s Python on one
/// CPU (the last one allowed), with `name` for its messages.
pub fn start_two_workers(interp: &Interpreter, name: &str, defs: &str) -> Ready {
    let python = interp.require().path();
    let script = two_workers_script(defs);
    let cpu = strobe_testkit::last_cpu();
    Ready::python_script_on(cpu, python.to_str().unwrap(), name, &script, &[])
}

/// For a sample of one of [`TWO_WORKERS`]: its letter and the other's (`a`, `b`).
pub fn own_and_other(m: &Merged<'_>) -> (char, char) {
    if m.thread == TWO_WORKERS[0].0 {
        ('a', 'b')
    } else {
        ('b', 'a')
    }
}

/// A worker's merged sample, for the test's own checks.
pub struct Merged<'a> {
    /// Cut short (the unwind stopped early): only the Python frames outside the marker and
    /// the native frames inside it are there.
    pub cut: bool,
    /// The thread's name.
    pub thread: &'a str,
    /// The frames' function names, outermost first.
    pub names: Vec<&'a str>,
    /// Where the worker's loop function is in `names`.
    pub work: usize,
    /// The sample, for assertion messages.
    pub context: String,
}

impl Merged<'_> {
    /// Where the function `name` is, if the stack has it.
    pub fn at(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }
}

/// Check the samples of the threads named in `workers` (thread name, its loop function):
/// every merged one has the loop inside `thread_run` inside `start_thread`, or keeps the loop
/// outside a cut-short marker, and `each` checks each merged one further. How many worker
/// samples there were, and how many kept only their Python frames or were cut short.
pub fn check_workers(
    what: &str,
    samples: &[Sample],
    t: &Tables,
    workers: &[(&str, &str)],
    mut each: impl FnMut(&Merged<'_>),
) -> (usize, usize) {
    let (mut count, mut unmerged) = (0, 0);
    for s in samples {
        let thread = t.thread(s.thread).unwrap();
        let name = thread.name.map(|n| t.str(n)).unwrap_or("");
        let Some(&(_, own)) = workers.iter().find(|(w, _)| *w == name) else {
            continue;
        };
        count += 1;
        let frames = t.stack(s.stack);
        if !frames
            .iter()
            .any(|&f| t.frame(f).unwrap().kind == FrameKind::Native)
        {
            unmerged += 1;
            continue;
        }
        let names: Vec<&str> = frames
            .iter()
            .map(|&f| t.str(t.frame(f).unwrap().function))
            .collect();
        let at = |name: &str| names.iter().position(|n| *n == name);
        let context = format!("{what}: {name}'s sample {names:?}");
        let work = at(own).unwrap_or_else(|| panic!("its own function: {context}"));
        let cut = at(TRUNCATED_FRAME);
        if let Some(cut) = cut {
            // The Python frames outside the marker, the native ones it could unwind inside.
            assert!(work < cut, "cut short inside {own}: {context}");
            unmerged += 1;
        } else {
            let start = at("start_thread").unwrap_or_else(|| panic!("start_thread: {context}"));
            let run = at("thread_run").unwrap_or_else(|| panic!("thread_run: {context}"));
            assert!(start < run && run < work, "outermost first: {context}");
        }
        each(&Merged {
            cut: cut.is_some(),
            thread: name,
            names,
            work,
            context,
        });
    }
    (count, unmerged)
}

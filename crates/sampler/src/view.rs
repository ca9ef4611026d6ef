//! [`ProcessView`]: what the sampler knows of one process between rounds.

use std::collections::{HashMap, HashSet};

use strobe_aggregate::{FrameId, FxBuild};
use strobe_walker::{RawSample, RawThread};

use crate::admit::Kept;
use crate::memo::{FrameCache, Memos};
use crate::names::{PthreadTids, ThreadNames};
use crate::native::NativeView;
use crate::tasks::TaskView;
use crate::tasks_legacy::LegacyTaskView;
use crate::threads::{KernelThreads, SharedSwitches};

/// Environment variable read by debug builds only: `STROBE_TEST_PANIC_AFTER=N` makes the
/// sampler thread panic in round N + 1 (inside the freeze under `--blocking`). The integration
/// tests use it to prove that a panic loses none of the samples already aggregated, is
/// reported, and leaves no target stopped (tests/integration/safety_lifecycle.rs).
const TEST_PANIC_ENV: &str = "STROBE_TEST_PANIC_AFTER";

/// Environment variable read by debug builds only: `STROBE_TEST_FAIL_AFTER=N` makes every
/// round after the first N fail as a failed memory read does, so that the integration tests
/// can see how failed rounds are reported (tests/integration/top.rs).
const TEST_FAIL_ENV: &str = "STROBE_TEST_FAIL_AFTER";

/// What the sampler knows of one process between rounds: its kernel threads, their names,
/// what each thread's previous sample resolved to, and the caveats found so far.
pub(crate) struct ProcessView {
    pub(crate) pid: i32,
    pub(crate) kernel: KernelThreads,
    pub(crate) names: ThreadNames,
    pub(crate) pthreads: PthreadTids,
    /// (code object, line) → frame id, valid while the walker hands out the same name strings.
    pub(crate) frames: FrameCache,
    /// Exception type address → its `<raise T>` frame id.
    pub(crate) exception_frames: HashMap<u64, FrameId, FxBuild>,
    /// Per thread state (by address): what its last sample resolved to.
    pub(crate) memos: Memos,
    /// Walks started so far (failed ones too): the walker's `RawThread::unchanged` refers to
    /// the previous walk, so a memo is only reused by the walk right after its own.
    pub(crate) walks: u64,
    /// Frame ids resolved in this sample (scratch).
    pub(crate) fresh: Vec<FrameId>,
    /// Our ids of the threads the last round found running (for the sampler's placement).
    pub(crate) running: Vec<u32>,
    /// The walker's output, reused from round to round (no allocation in steady state).
    pub(crate) raw: RawSample,
    warned: HashSet<&'static str>,
    pub(crate) warnings: Vec<String>,
    pub(crate) free_threaded: bool,
    /// Rounds started so far (for [`ProcessView::test_panic`]).
    pub(crate) rounds_started: u64,
    /// Debug builds only: panic in the round after this many (see
    /// [`ProcessView::test_panic`]).
    panic_after: Option<u64>,
    /// Debug builds only: fail every round after this many (see `STROBE_TEST_FAIL_AFTER`).
    fail_after: Option<u64>,
    /// The process's auxiliary vector before it was attached (see
    /// `lifecycle::read_auxv`): another one means it replaced its program.
    pub(crate) auxv: Option<Vec<u8>>,
    /// Under `--subprocesses`, the frame every stack of this process starts with (its PID and
    /// command line).
    pub(crate) root_frame: Option<FrameId>,
    /// Native stacks (`--native`).
    pub(crate) native: NativeView,
    /// The threads the current round samples (scratch).
    pub(crate) kept: Vec<Kept>,
    /// Task-aware stacks (`--async`).
    pub(crate) tasks: TaskView,
    /// Task-aware stacks before 3.14.
    pub(crate) legacy_tasks: LegacyTaskView,
}

impl ProcessView {
    /// For process `pid`, whose auxiliary vector `auxv` was read before it was attached; its
    /// threads' switches are read from `switches`, shared with the other processes sampled.
    pub(crate) fn new(
        pid: i32,
        free_threaded: bool,
        root_frame: Option<FrameId>,
        auxv: Option<Vec<u8>>,
        switches: SharedSwitches,
    ) -> ProcessView {
        ProcessView {
            pid,
            kernel: KernelThreads::new(pid, switches),
            names: ThreadNames::new(),
            pthreads: PthreadTids::default(),
            frames: HashMap::default(),
            exception_frames: HashMap::default(),
            memos: HashMap::default(),
            walks: 0,
            fresh: Vec::new(),
            running: Vec::new(),
            raw: RawSample::new(),
            warned: HashSet::new(),
            warnings: Vec::new(),
            free_threaded,
            rounds_started: 0,
            panic_after: test_setting(TEST_PANIC_ENV),
            fail_after: test_setting(TEST_FAIL_ENV),
            auxv,
            root_frame,
            native: NativeView::new(),
            kept: Vec::new(),
            tasks: TaskView::default(),
            legacy_tasks: LegacyTaskView::default(),
        }
    }

    /// Panic if the test hook asks for it in this round (see `STROBE_TEST_PANIC_AFTER`).
    pub(crate) fn test_panic(&self) {
        if self.panic_after.is_some_and(|n| self.rounds_started > n) {
            panic!(
                "test panic requested in sampling round {}",
                self.rounds_started
            );
        }
    }

    /// Whether the test hook asks this round to fail (see `STROBE_TEST_FAIL_AFTER`).
    pub(crate) fn test_fails(&self) -> bool {
        self.fail_after.is_some_and(|n| self.rounds_started > n)
    }

    /// Thread `t`'s kernel id as seen from here: from its native id (3.11+) through the
    /// PID namespace translation, or from glibc's thread descriptors (≤3.10), where known.
    pub(crate) fn host_tid(&self, t: &RawThread) -> Option<u32> {
        match t.native_id {
            Some(inner) => self.kernel.host_of(inner),
            None => self.pthreads.get(t.thread_id),
        }
    }

    /// Keep `msg` for the summary, unless a warning under `key` was kept already.
    pub(crate) fn warn_once(&mut self, key: &'static str, msg: String) {
        if self.warned.insert(key) {
            self.warnings.push(msg);
        }
    }
}

/// A test hook's setting, from the environment variable named; always `None` in release
/// builds, which never read it.
fn test_setting(name: &str) -> Option<u64> {
    if cfg!(debug_assertions) {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    } else {
        None
    }
}

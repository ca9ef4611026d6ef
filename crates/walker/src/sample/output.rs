//! What a sample hands to the caller: frames as `(code address, instruction, line)`, threads,
//! and the sample that holds them in buffers reused from one sample to the next.

use std::ops::Range;

use crate::exception::RawException;

/// One Python frame of a [`RawSample`]: enough to key it, no strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// Address of the code object. With `line`, a stable key for interning while the code
    /// object lives; [`Walker::frame_info`](crate::walk::Walker::frame_info) turns it into names.
    pub code_addr: u64,
    /// The instruction, in the units [`crate::linetable::LineMap::line`] takes for this
    /// layout (bytes ≤3.9, code units 3.10+; negative before the first instruction).
    pub lasti: i64,
    /// The current line; `None` when the line table has none for the instruction.
    pub line: Option<i32>,
}

/// One thread of a [`RawSample`]. The default is a thread of no frames, everything zero, false
/// or absent (for building one in tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawThread {
    /// Address of the thread's `PyInterpreterState`.
    pub interp_addr: u64,
    /// The interpreter's id (0 for the main interpreter).
    pub interp_id: i64,
    /// Address of the `PyThreadState`: stable while the thread lives.
    pub tstate_addr: u64,
    /// `pthread_t`, equal to `threading.get_ident()` in the target.
    pub thread_id: u64,
    /// Kernel thread id (3.11+: `native_thread_id`; `None` before, or while unknown).
    pub native_id: Option<u32>,
    /// Whether this thread holds the GIL of its interpreter.
    pub holds_gil: bool,
    /// Whether this thread is running the cyclic garbage collector: its interpreter's
    /// collector flag (`collecting`) is set and it holds the GIL, which the collector keeps
    /// while it runs. Always `false` where the holder is unknown (free-threaded builds) or the
    /// flag cannot be found (a stripped ≤3.6 interpreter). Its frames are those of the Python
    /// code that triggered the collection (a `gc.collect()` call or an allocation).
    pub gc: bool,
    /// The exception the thread is raising or handling (inside an `except` or `finally`
    /// block), read from its thread state; `None` when there is none or it could not be read.
    pub exception: Option<RawException>,
    /// The asyncio task the thread runs (`asyncio_running_task` of its thread state, 3.14+; 0
    /// for none), read with the sample when
    /// [`Walker::watch_running_task`](crate::walk::Walker::watch_running_task) asked for it.
    pub running_task: Option<u64>,
    /// This thread's frames in [`RawSample::frames`], innermost first.
    pub frames: Range<usize>,
    /// The stack was deeper than [`MAX_DEPTH`](crate::limits::MAX_DEPTH) and was cut there.
    pub truncated: bool,
    /// How many of the outermost frames are the same frames, at the same instructions, as
    /// the outermost frames of this thread state in the previous sample `sample_into`
    /// returned successfully (0 on its first sample). Attempts that failed or were retried
    /// inside `sample_into` never count as the previous sample.
    /// Callers that keep per-thread results may reuse theirs for these frames.
    pub unchanged: usize,
    /// Whether its frames were read. `false` only for a thread the caller of
    /// [`Walker::sample_wanted_into`](crate::walk::Walker::sample_wanted_into) did not want
    /// and that does not hold the GIL: `frames` is empty and `unchanged` 0.
    pub walked: bool,
    /// Whether its thread state was read in this sample. `false` only for a thread that was
    /// not walked (see `walked`) and whose state the sample did not need to prove the thread
    /// lists unchanged, between two full checks (see "Thread states read only where they
    /// matter" in the module documentation of `strobe_walker::sample`). Such a thread's
    /// `thread_id` and `native_id` are as last read (within the last 16 samples, and only ids
    /// no longer 0 nor shared with another thread state: ids that no longer change while the
    /// thread lives); `exception` and `running_task` are `None` (not known); `holds_gil` and
    /// `gc` are `false` (a GIL holder's state is always read); and the thread may have ended
    /// since (seen at the next full check, or as soon as it is wanted).
    pub state_read: bool,
}

/// A sample of every thread, in buffers reused from one sample to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSample {
    /// Threads, interpreter by interpreter, in each interpreter's list order.
    pub threads: Vec<RawThread>,
    /// Frames of all threads; each thread's are the range [`RawThread::frames`].
    pub frames: Vec<RawFrame>,
    /// Parallel to `frames`: whether an evaluation loop call of the interpreter
    /// (`_PyEval_EvalFrameDefault`) was entered with the frame, i.e. the frame was called from
    /// C and is the outermost of the frames one loop call runs. Up to 3.10 every frame is; 3.11
    /// flags it (`is_entry`); 3.12+ pushes a shim frame below it. What the native merge pairs
    /// evaluation loops on the C stack with.
    pub entries: Vec<bool>,
}

impl RawSample {
    /// An empty sample; buffers grow on the first samples, then stay.
    pub fn new() -> RawSample {
        RawSample::default()
    }

    /// Empty it, keeping the buffers.
    pub fn clear(&mut self) {
        self.threads.clear();
        self.frames.clear();
        self.entries.clear();
    }

    /// The frames of `thread`, innermost first.
    pub fn frames_of(&self, thread: &RawThread) -> &[RawFrame] {
        self.frames.get(thread.frames.clone()).unwrap_or(&[])
    }

    /// The entry flags of `thread`'s frames (see [`RawSample::entries`]), innermost first.
    pub fn entries_of(&self, thread: &RawThread) -> &[bool] {
        self.entries.get(thread.frames.clone()).unwrap_or(&[])
    }
}

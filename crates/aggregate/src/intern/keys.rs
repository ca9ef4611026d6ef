//! The ids the interner gives out ([`StrId`], [`FrameId`], [`StackId`], [`ThreadId`]), the
//! borrowed keys it interns ([`FrameKey`], [`ThreadKey`]), the interned [`Frame`] and [`Thread`]
//! they become, and the labels of the frames that are not functions (`<GC>`, `<raise T>`,
//! `<task NAME>`).

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The id as an index into its table.
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// An interned string (function name, file name, thread name).
    StrId
);
id_type!(
    /// An interned frame: function, file name and (optionally) line.
    FrameId
);
id_type!(
    /// An interned stack: a sequence of frames, outermost first.
    StackId
);
id_type!(
    /// An interned thread identity.
    ThreadId
);

/// What a frame is, so that viewers can tell (and colour) them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FrameKind {
    /// A Python function's frame.
    #[default]
    Python,
    /// A native (C, C++, Rust, ...) function's frame, under `--native`.
    Native,
    /// The kernel boundary (`[syscall]`): the thread was in a system call.
    Kernel,
    /// Interpreter activity that is not a Python function: `<GC>`, the cyclic garbage
    /// collector running on top of the Python frame that triggered it.
    Interpreter,
    /// The exception the thread was raising or handling (`<raise ValueError>`), on top of its
    /// Python frames; shown by `--mode exception`.
    Exception,
    /// An asyncio task (`<task NAME>`) in a task-aware stack (`--async`): the frames above it
    /// are that task's coroutines, the frames below belong to the tasks awaiting it.
    Task,
}

impl FrameKind {
    /// The kind's code in file formats (`raw`): 0, 1, 2, 3, 4, 5.
    pub fn code(self) -> u8 {
        match self {
            FrameKind::Python => 0,
            FrameKind::Native => 1,
            FrameKind::Kernel => 2,
            FrameKind::Interpreter => 3,
            FrameKind::Exception => 4,
            FrameKind::Task => 5,
        }
    }

    /// The kind of [`FrameKind::code`] `c`.
    pub fn from_code(c: u8) -> Option<FrameKind> {
        match c {
            0 => Some(FrameKind::Python),
            1 => Some(FrameKind::Native),
            2 => Some(FrameKind::Kernel),
            3 => Some(FrameKind::Interpreter),
            4 => Some(FrameKind::Exception),
            5 => Some(FrameKind::Task),
            _ => None,
        }
    }

    /// `python`, `native`, `kernel`, `interpreter`, `exception` or `task`.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Python => "python",
            FrameKind::Native => "native",
            FrameKind::Kernel => "kernel",
            FrameKind::Interpreter => "interpreter",
            FrameKind::Exception => "exception",
            FrameKind::Task => "task",
        }
    }
}

/// A frame as the walker sees it, borrowed; the key for
/// [`Interner::intern_frame`](super::Interner::intern_frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey<'a> {
    /// Python: the qualified name where the interpreter has one (`co_qualname`, 3.11+), else
    /// `co_name`. Native: the symbol (demangled), or `module+0xoffset` without one.
    pub function: &'a str,
    /// Python: `co_filename`. Native: the source file from DWARF, or empty.
    pub filename: &'a str,
    /// Line being executed; `None` when unknown or when aggregating by function.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the path of the shared object (or executable) the code is in.
    pub module: Option<&'a str>,
    /// The function's first line (Python: `co_firstlineno`, the `def` line or its first
    /// decorator); `None` when unknown (native frames, recordings older than raw version 4).
    pub first_line: Option<i32>,
}

/// The function name of the frame put on top of a thread's stack while it runs the cyclic
/// garbage collector ([`FrameKey::gc`]).
pub const GC_FRAME: &str = "<GC>";

/// The function name of the [`FrameKind::Exception`] frame for an exception of type
/// `type_name`: `<raise ValueError>`.
pub fn exception_label(type_name: &str) -> String {
    format!("<raise {type_name}>")
}

/// The function name of the [`FrameKind::Task`] frame of a task named `name`: `<task NAME>`.
pub fn task_label(name: &str) -> String {
    format!("<task {name}>")
}

impl<'a> FrameKey<'a> {
    /// The `<GC>` frame: the thread is running the cyclic garbage collector.
    pub fn gc() -> FrameKey<'static> {
        FrameKey {
            function: GC_FRAME,
            filename: "",
            line: None,
            kind: FrameKind::Interpreter,
            module: None,
            first_line: None,
        }
    }

    /// The frame for an exception being raised or handled: `label` is
    /// [`exception_label`]`(type name)`.
    pub fn exception(label: &'a str) -> FrameKey<'a> {
        FrameKey {
            function: label,
            filename: "",
            line: None,
            kind: FrameKind::Exception,
            module: None,
            first_line: None,
        }
    }

    /// The frame for an asyncio task: `label` is [`task_label`]`(task name)`.
    pub fn task(label: &'a str) -> FrameKey<'a> {
        FrameKey {
            function: label,
            filename: "",
            line: None,
            kind: FrameKind::Task,
            module: None,
            first_line: None,
        }
    }

    /// A Python frame (first line unknown; see [`FrameKey::with_first_line`]).
    pub fn python(function: &'a str, filename: &'a str, line: Option<i32>) -> FrameKey<'a> {
        FrameKey {
            function,
            filename,
            line,
            kind: FrameKind::Python,
            module: None,
            first_line: None,
        }
    }

    /// The same frame with the function's first line.
    pub fn with_first_line(self, first_line: Option<i32>) -> FrameKey<'a> {
        FrameKey { first_line, ..self }
    }
}

/// A thread identity as the walker sees it, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadKey<'a> {
    /// Native thread id (Linux TID) where known, else the interpreter's thread id.
    pub os_tid: u64,
    /// Python-level thread name, if the reader found one.
    pub name: Option<&'a str>,
    /// Interpreter id (0 for the main interpreter).
    pub interpreter_id: i64,
}

/// An interned frame (see [`FrameKey`] for what each field holds per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Function name.
    pub function: StrId,
    /// File name.
    pub filename: StrId,
    /// Line, if known.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the shared object's path.
    pub module: Option<StrId>,
    /// The function's first line, if known.
    pub first_line: Option<i32>,
}

impl Frame {
    /// A Python frame of interned strings (first line unknown).
    pub fn python(function: StrId, filename: StrId, line: Option<i32>) -> Frame {
        Frame {
            function,
            filename,
            line,
            kind: FrameKind::Python,
            module: None,
            first_line: None,
        }
    }
}

/// An interned thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thread {
    /// Native thread id.
    pub os_tid: u64,
    /// Thread name.
    pub name: Option<StrId>,
    /// Interpreter id.
    pub interpreter_id: i64,
}

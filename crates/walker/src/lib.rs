//! Walks CPython's interpreter structures in another process.
//!
//! The walker never does I/O itself: everything goes through [`RemoteMemory`], so the same code
//! runs on live processes and on synthetic memory images. It never branches on version
//! numbers, only on the named shapes of [`Layout`] (frame model, line table, string model...).
//!
//! [`Walker`] (module [`walk`]) is the entry point: give it the memory, the [`Layout`] the
//! `layout` module resolved and the [`Roots`] the locate step found, then call
//! [`Walker::sample_into`] once per sample (the allocation-free hot path, module [`sample`]) and
//! [`Walker::frame_info`] for frames not seen before, or [`Walker::walk`] for every thread's
//! stack with names resolved.
//!
//! Modules depend on each other in one direction only, leaves first: `error`, [`limits`],
//! `addrmap`, `fields`, `frame` (decoding one frame), [`strings`], [`linetable`], `process`
//! (memory, layout, roots and the lookups from the roots), `code` (code objects and their
//! caches), [`sample`] (the sampling state and the hot path), then [`walk`] ([`Walker`], which
//! owns one of each). [`debug_offsets`], [`layout`], [`threadnames`] and [`pthreads`] stand
//! apart: they find the layout and name threads. [`value`] (bounded reprs of objects) and
//! [`locals`] (a frame's arguments and local variables) serve `dump --locals`; [`asyncio`]
//! (tasks, their coroutine stacks and who awaits whom) serves `dump --async`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addrmap;
pub mod asyncio;
pub mod asyncio_legacy;
mod code;
pub mod debug_offsets;
mod error;
mod exception;
mod fields;
mod frame;
pub mod layout;
pub mod limits;
pub mod linetable;
pub mod locals;
mod process;
pub mod pthreads;
pub mod sample;
pub mod strings;
pub mod threadnames;
pub mod value;
pub mod walk;

pub use error::WalkError;
pub use exception::RawException;
pub use sample::{RawFrame, RawSample, RawThread};
pub use strobe_memory::RemoteMemory;
pub use strobe_python_abi::{Flavour, Layout, Version};
pub use walk::{PyFrame, Roots, ThreadException, ThreadStack, Walker};

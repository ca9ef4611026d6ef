//! strobe's integration tests: the real `strobe` binary against real interpreters.
//!
//! One test binary (built once) holds every module. Each test starts
//! `tests/targets/tärget_ü.py` under one interpreter, waits for its `READY` line, runs
//! `strobe dump` on it, and checks the result against what the target says about itself and
//! against the `# @block:` markers in the script's source. Interpreters come from
//! `.ci/provision.sh`; a missing one is a failure, not a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod blocking;
mod container;
mod convert_stop;
mod dump_async;
mod dump_core;
mod dump_exceptions;
mod dump_locals;
mod errors;
mod gecko_profiler;
mod native;
mod native_held;
mod native_record;
mod profiles;
mod record;
mod record_async;
mod record_exceptions;
mod record_gc;
mod record_modes;
mod record_spill;
mod record_stop;
mod record_summary;
mod record_value;
mod safety;
mod safety_input;
mod safety_lifecycle;
mod safety_source;
mod shell;
mod stacks;
mod subinterp;
mod subprocesses;
mod thread_rename;
mod top;
mod top_hangup;
mod variants;
mod wheel;

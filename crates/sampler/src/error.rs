//! [`SamplerError`]: why sampling could not start or had to stop early.

use strobe_aggregate::CapacityError;
use strobe_target::AttachError;
use strobe_walker::WalkError;

/// Why sampling could not start or had to stop early.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// Attaching or reading the target failed in a way that will not get better.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The interpreter's structures cannot be read by this strobe.
    #[error("reading the Python stacks of process {pid} failed: {error}")]
    Walk {
        /// The target.
        pid: i32,
        /// What went wrong (part of the message, so not also the `source()`).
        error: WalkError,
    },
    /// The profile outgrew its id space.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// The sampler thread could not be started.
    #[error("could not start the sampler thread: {0}")]
    Spawn(std::io::Error),
    /// The sampler thread panicked (a bug in strobe).
    #[error("the sampler thread stopped unexpectedly (a bug in strobe; please report it): {0}")]
    Panicked(String),
}

//! `strobe dump --async` on CPython 3.8–3.13, where the `_asyncio` module does not describe
//! itself: its tasks are found through `sys.modules["_asyncio"]` and read with python-abi's
//! per-version tables (see [`strobe_walker::asyncio_legacy`]). The result is the same
//! [`AsyncDump`] as for 3.14+, so text and JSON look alike; what differs (links derived, not
//! recorded) is said in the README.

use strobe_walker::asyncio_legacy::{self as reader, asyncio_legacy_for, LegacyTasks};

use super::AsyncError;
use crate::snapshot::AsyncDump;
use crate::{AttachError, Target};

impl Target {
    /// [`Target::async_snapshot`] for 3.8–3.13.
    pub(super) fn async_snapshot_legacy(
        &mut self,
        blocking: bool,
    ) -> Result<AsyncDump, AttachError> {
        let pid = self.pid();
        let version = self.process.version;
        let layout = *self.walker.layout();
        let Some(table) =
            asyncio_legacy_for(version.major, version.minor, layout.flavour.free_threaded)
        else {
            return Err(AsyncError::UnsupportedBuild {
                pid,
                version: version.to_string(),
            }
            .into());
        };
        let (found, thread_of) = self.read_threads_then(
            blocking,
            |walker, interps, tstates| reader::read_tasks(walker, table, interps, tstates),
            |target, error| match error {
                strobe_walker::WalkError::Unsupported(why) => AsyncError::Read { pid, why }.into(),
                error => target.exited_or(AttachError::Walk { pid, error }),
            },
        )?;
        match found {
            LegacyTasks::NotLoaded => Ok(self.no_asyncio_dump()),
            LegacyTasks::Read(state) => Ok(self.tasks_dump(&state, &thread_of)),
        }
    }
}

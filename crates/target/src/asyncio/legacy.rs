//! `strobe dump --async` on CPython 3.8–3.13, where the `_asyncio` module does not describe
//! itself: its tasks are found through `sys.modules["_asyncio"]` and read with python-abi's
//! per-version tables (see [`strobe_walker::asyncio_legacy`]). The result is the same
//! [`AsyncDump`] as for 3.14+, so text and JSON look alike; what differs (links derived, not
//! recorded) is said in the README.

use strobe_walker::asyncio_legacy::{self as reader, asyncio_legacy_for, LegacyTasks};

use super::{model, AsyncError};
use crate::snapshot::{AsyncDump, AsyncSnapshot};
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
        let mut warnings = self.warnings.clone();
        let state = match found {
            LegacyTasks::NotLoaded => {
                warnings.push(
                    "the process has not loaded the _asyncio module: it has no asyncio tasks"
                        .to_string(),
                );
                return Ok(AsyncDump {
                    pid,
                    executable: self.executable.clone(),
                    python: self.python_info(),
                    asyncio: AsyncSnapshot {
                        loops: Vec::new(),
                        cycles: Vec::new(),
                    },
                    warnings,
                });
            }
            LegacyTasks::Read(state) => state,
        };
        warnings.extend(state.errors.iter().cloned());
        let loop_types = self.loop_types(&state);
        let sleeps = self.sleep_delays(&state);
        Ok(AsyncDump {
            pid,
            executable: self.executable.clone(),
            python: self.python_info(),
            asyncio: model(&state, &thread_of, &loop_types, &sleeps),
            warnings,
        })
    }
}

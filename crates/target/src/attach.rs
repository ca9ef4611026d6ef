//! Attaching: opening a live process or a core file, finding its interpreter, resolving the
//! layout and building the walker a [`Target`] holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strobe_corefile::{Core, CoreOptions, FileMapping};
use strobe_locate::maps::Mapping;
use strobe_locate::LocateError;
use strobe_memory::MemError;
use strobe_remote::ProcessMemory;
use strobe_walker::walk::{Roots, Walker};
use strobe_walker::WalkError;

use crate::error::{core_walk, exited_or, AttachError};
use crate::{Target, TargetMemory};

impl Target {
    /// Open `pid`, find its interpreter and prepare to walk it.
    pub fn attach(pid: i32) -> Result<Target, AttachError> {
        // The maps read to check access are the ones the interpreter is looked for in.
        let (mem, maps) = ProcessMemory::open_with_maps(pid)?;
        let process = strobe_locate::locate_with_maps(pid, &mem, &maps)
            .map_err(|e| exited_or(pid, e.into()))?;
        let runtime = process.runtime;
        let resolved =
            strobe_walker::layout::resolve(&mem, process.version, process.debug_build, runtime)
                .map_err(|error| exited_or(pid, AttachError::Layout { pid, error }))?;
        let roots = Roots {
            runtime: process.runtime,
            interp_head: process.interp_head,
            tstate_current: process.tstate_current,
            gc_collecting: process.gc_collecting,
        };
        let executable = process.executable.as_ref().map(|p| p.display().to_string());
        let mut warnings = process.notes.clone();
        warnings.extend(resolved.warnings);
        Ok(Target {
            walker: Walker::new(TargetMemory::Process(mem), resolved.layout, roots),
            core: None,
            warnings,
            from_debug_offsets: resolved.from_debug_offsets,
            executable,
            process,
            native: None,
        })
    }

    /// Open the core file at `path`, find its interpreter and prepare to walk it. The files
    /// the core names are found as `opts` says (`--executable`, `--sysroot`).
    pub fn open_core(path: &Path, opts: CoreOptions<'_>) -> Result<Target, AttachError> {
        let core = Arc::new(Core::open(path, opts)?);
        let pid = i32::try_from(core.pid()).unwrap_or(0);
        let mappings = core_mappings(&core, |_| false);
        let open = |m: &Mapping| {
            let named = m.path.as_deref().unwrap_or_default();
            core.file(named).map_err(|reason| LocateError::Elf {
                pid,
                path: PathBuf::from(named),
                reason: format!("{reason}; pass --sysroot or --executable to say where it is"),
            })
        };
        let core_err = |error| AttachError::CoreLocate {
            core: path.to_path_buf(),
            error,
        };
        let process = strobe_locate::locate_in(pid, &*core, &mappings, core.executable(), &open)
            .map_err(core_err)?;
        // The interpreter's state must be in the core itself: the file's initial bytes
        // there would read as an interpreter that never started.
        if let Some(root) = process.runtime.or(process.interp_head) {
            if !core.holds(root, 8) {
                let error = WalkError::Mem(MemError::Fault { addr: root, len: 8 });
                return Err(core_walk(&core, error));
            }
        }
        let resolved = strobe_walker::layout::resolve(
            &*core,
            process.version,
            process.debug_build,
            process.runtime,
        )
        .map_err(|error| core_walk(&core, error))?;
        let roots = Roots {
            runtime: process.runtime,
            interp_head: process.interp_head,
            tstate_current: process.tstate_current,
            gc_collecting: process.gc_collecting,
        };
        let mut warnings = process.notes.clone();
        warnings.extend(resolved.warnings);
        let no_stack: Vec<String> = core
            .threads()
            .iter()
            .filter(|t| core.stack_missing(t))
            .map(|t| t.tid.to_string())
            .collect();
        if !no_stack.is_empty() {
            warnings.push(format!(
                "the core holds no stack memory for thread{} {} (only zeros at the stack \
                 pointer): Python frames kept on the C stack (3.11+) are missing, so stacks \
                 may end early; gdb's gcore writes such cores for processes with glibc 2.41+ \
                 (guard pages inside thread stacks): use a core written by the kernel",
                if no_stack.len() == 1 { "" } else { "s" },
                no_stack.join(", ")
            ));
        }
        Ok(Target {
            walker: Walker::new(
                TargetMemory::Core(Arc::clone(&core)),
                resolved.layout,
                roots,
            ),
            executable: core.executable().map(str::to_string),
            core: Some(core),
            warnings,
            from_debug_offsets: resolved.from_debug_offsets,
            process,
            native: None,
        })
    }
}

/// The core's file mappings, as `/proc/PID/maps` would have listed them, executable where
/// `exec` says; each file gets its own made-up inode, since only the name identifies a file in
/// a core.
pub(crate) fn core_mappings(core: &Core, exec: impl Fn(&FileMapping) -> bool) -> Vec<Mapping> {
    let mut names: Vec<&str> = Vec::new();
    core.mappings()
        .map(|m| {
            let inode = match names.iter().position(|n| *n == m.path) {
                Some(i) => i + 1,
                None => {
                    names.push(&m.path);
                    names.len()
                }
            };
            Mapping {
                start: m.start,
                end: m.end,
                read: true,
                write: false,
                exec: exec(m),
                offset: m.offset,
                dev_major: 0,
                dev_minor: 0,
                inode: inode as u64,
                path: Some(m.path.clone()),
                deleted: m.deleted,
            }
        })
        .collect()
}

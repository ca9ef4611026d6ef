//! What makes a [`super::PerfThread`] take a sample: the `cpu-clock` of its CPU time, or the
//! thread's own switches out of its CPU (a software event, or the `sched:sched_switch`
//! tracepoint with a filter, which can keep only the switches of a thread that stays
//! runnable: a preemption).
//!
//! A switch-out sample is taken in the kernel, in the scheduler, while the thread switched out
//! is still the current one: its user registers are those it entered the kernel with (the
//! interrupt that preempted it, or the system call it was in) and its user stack is copied
//! from their stack pointer. Because the sample point is in the kernel, these events must
//! count kernel time (`exclude_kernel` off), which needs `perf_event_paranoid` ≤ 1 or
//! CAP_PERFMON.

use super::PerfError;
use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

pub(crate) const PERF_TYPE_TRACEPOINT: u32 = 2;
pub(super) const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
pub(super) const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;

/// `PERF_EVENT_IOC_SET_FILTER`: `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_SET_FILTER: nix::libc::c_ulong = 0x4008_2406;

/// The `sched:sched_switch` filter that keeps a switch out of a thread still runnable:
/// preempted (`prev_state` is `TASK_REPORT_MAX`, 0x100, printed `R+`, since Linux 4.14) or
/// giving its CPU up without waiting (`sched_yield`: 0, `R`). The perf switch records of
/// `crate::SwitchWatch` call both of these a preemption.
pub const STILL_RUNNABLE_FILTER: &str = "prev_state == 0 || prev_state == 256";

/// What makes a [`super::PerfThread`] take a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerfTrigger {
    /// `cpu-clock`: every `1 / frequency_hz` seconds of the thread's CPU time.
    CpuClock,
    /// Every switch of the thread out of its CPU (`PERF_COUNT_SW_CONTEXT_SWITCHES`, period 1),
    /// whether it was preempted or went to wait.
    SwitchOut,
    /// Every hit of a tracepoint (its id from [`tracepoint_id`]) while the thread is on a CPU,
    /// kept only where `filter` (an ftrace filter expression over the tracepoint's fields)
    /// holds. `sched:sched_switch` with [`STILL_RUNNABLE_FILTER`] samples preemptions alone.
    Tracepoint {
        /// The tracepoint's id.
        id: u64,
        /// An ftrace filter, or `None` for every hit.
        filter: Option<String>,
    },
}

impl PerfTrigger {
    /// The thread's preemptions: `sched:sched_switch` filtered by [`STILL_RUNNABLE_FILTER`].
    pub fn preemptions() -> Result<PerfTrigger, PerfError> {
        Ok(PerfTrigger::Tracepoint {
            id: tracepoint_id("sched", "sched_switch")?,
            filter: Some(STILL_RUNNABLE_FILTER.to_string()),
        })
    }

    /// `perf_event_attr.type` and `.config`.
    pub(super) fn event(&self) -> (u32, u64) {
        match self {
            PerfTrigger::CpuClock => (super::PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK),
            PerfTrigger::SwitchOut => (super::PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES),
            PerfTrigger::Tracepoint { id, .. } => (PERF_TYPE_TRACEPOINT, *id),
        }
    }

    /// Whether the sample is taken in the kernel (so kernel time must be counted).
    pub(super) fn in_kernel(&self) -> bool {
        !matches!(self, PerfTrigger::CpuClock)
    }

    /// Set the tracepoint's filter on the opened event, if it has one.
    pub(crate) fn apply_filter(&self, fd: &OwnedFd) -> Result<(), PerfError> {
        let PerfTrigger::Tracepoint {
            filter: Some(filter),
            ..
        } = self
        else {
            return Ok(());
        };
        let filter = CString::new(filter.as_str())
            .map_err(|_| PerfError::Config("a tracepoint filter cannot contain a NUL byte"))?;
        set_filter(fd, &filter).map_err(|errno| PerfError::Filter {
            filter: filter.to_string_lossy().into_owned(),
            errno,
        })
    }
}

/// The id of tracepoint `category:name`, from tracefs (`/sys/kernel/tracing`, or the older
/// `/sys/kernel/debug/tracing`).
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64, PerfError> {
    let mut last = Errno::ENOENT;
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        match std::fs::read_to_string(format!("{root}/events/{category}/{name}/id")) {
            Ok(text) => {
                return text.trim().parse().map_err(|_| PerfError::Tracepoint {
                    name: format!("{category}:{name}"),
                    errno: Errno::EINVAL,
                })
            }
            Err(e) => last = e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        }
    }
    Err(PerfError::Tracepoint {
        name: format!("{category}:{name}"),
        errno: last,
    })
}

/// Set `filter` on the tracepoint event `fd`.
#[allow(unsafe_code)]
pub(crate) fn set_filter(fd: &OwnedFd, filter: &CString) -> Result<(), Errno> {
    // SAFETY: `fd` is an open perf event; the kernel copies the NUL-terminated string the
    // pointer names (alive for the call) and keeps no reference to it.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_FILTER, filter.as_ptr()) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

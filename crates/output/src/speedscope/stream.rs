//! speedscope from a stream of samples in memory bounded by distinct frames: each frame's
//! entry is written as it is first met, and each profile's (thread's, under `--threads`)
//! samples and weights are appended to two spools (`crate::spill::Spools`: in memory up to
//! the spill budget, then in files), copied into the output at the end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use strobe_aggregate::{thread_label_in, Metadata, ProfileOptions, Sample, Tables, ThreadId};

use super::{
    group_name, push_frame, push_header, push_profile_start, push_sample, END, FRAMES_END,
    PROFILE_END, WEIGHTS,
};
use crate::spill::Spools;
use crate::stream::{FrameMap, Recorder};

/// One profile: its samples in spool `2i`, weights in `2i + 1`.
struct Group {
    name: String,
    /// Where it goes among the others: by thread id, interpreter and name, as a `Profile`
    /// orders threads.
    order: (u64, i64, Option<String>),
    samples: u64,
    end: u64,
}

/// Records a speedscope profile sample by sample (see the module documentation); the output
/// means what [`super::Speedscope`] writes of the profile built from the same samples.
pub(crate) struct SpeedscopeRecorder {
    options: ProfileOptions,
    frames: FrameMap,
    /// `shared.frames`, as written.
    frame_list: String,
    groups: Vec<Group>,
    group_of: HashMap<Option<ThreadId>, usize>,
    spools: Spools,
    numbers: Vec<u32>,
    text: String,
}

impl SpeedscopeRecorder {
    /// A recorder with `options`, spilling to a directory it creates in `dir` past `budget`
    /// bytes of samples.
    pub(crate) fn new(options: ProfileOptions, dir: &Path, budget: usize) -> SpeedscopeRecorder {
        SpeedscopeRecorder {
            options,
            frames: FrameMap::new(options),
            frame_list: String::new(),
            groups: Vec::new(),
            group_of: HashMap::new(),
            spools: Spools::new(dir, budget),
            numbers: Vec::new(),
            text: String::new(),
        }
    }
}

impl Recorder for SpeedscopeRecorder {
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        if !self.options.filter.accepts(s.flags) {
            return Ok(());
        }
        let list = &mut self.frame_list;
        self.frames
            .stack(tables, s.stack, &mut self.numbers, |n, f| {
                if n > 0 {
                    list.push(',');
                }
                push_frame(list, tables, f);
                Ok::<(), io::Error>(())
            })?;
        if self.numbers.is_empty() {
            return Ok(());
        }
        let key = self.options.per_thread.then_some(s.thread);
        let g = match self.group_of.get(&key) {
            Some(&g) => g,
            None => {
                let info = tables.thread(s.thread);
                let order = match (key, info) {
                    (Some(_), Some(th)) => (
                        th.os_tid,
                        th.interpreter_id,
                        th.name.map(|n| tables.str(n).to_owned()),
                    ),
                    _ => (0, -1, None),
                };
                self.groups.push(Group {
                    name: group_name(key.map(|th| thread_label_in(tables, th))),
                    order,
                    samples: 0,
                    end: 0,
                });
                self.group_of.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[g];
        let comma = if group.samples > 0 { "," } else { "" };
        group.samples += 1;
        group.end = group.end.saturating_add(s.weight_ns);
        self.text.clear();
        self.text.push_str(comma);
        push_sample(&mut self.text, self.numbers.iter().copied());
        self.spools.append(2 * g, self.text.as_bytes())?;
        self.text.clear();
        let _ = write!(self.text, "{comma}{}", s.weight_ns);
        self.spools.append(2 * g + 1, self.text.as_bytes())
    }

    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(64 << 10, out);
        let mut s = String::new();
        push_header(&mut s, meta);
        w.write_all(s.as_bytes())?;
        w.write_all(self.frame_list.as_bytes())?;
        w.write_all(FRAMES_END.as_bytes())?;
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by(|a, b| self.groups[*a].order.cmp(&self.groups[*b].order));
        if order.is_empty() {
            s.clear();
            push_profile_start(&mut s, &group_name(None), 0);
            s.push_str(WEIGHTS);
            s.push_str(PROFILE_END);
            w.write_all(s.as_bytes())?;
        }
        for (i, g) in order.into_iter().enumerate() {
            s.clear();
            if i > 0 {
                s.push(',');
            }
            push_profile_start(&mut s, &self.groups[g].name, self.groups[g].end);
            w.write_all(s.as_bytes())?;
            self.spools.copy_to(2 * g, &mut w)?;
            w.write_all(WEIGHTS.as_bytes())?;
            self.spools.copy_to(2 * g + 1, &mut w)?;
            w.write_all(PROFILE_END.as_bytes())?;
        }
        w.write_all(END.as_bytes())?;
        w.flush()
    }

    fn spill_note(&self) -> Option<String> {
        self.spools.spill_note()
    }
}

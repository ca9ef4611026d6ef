//! The call tree of one function: its callers above it and its callees below it, each a tree
//! of the paths that led to it or away from it, with their sample counts, built from the
//! stacks kept since the start (or reset) ([`KeptStacks`]). Its total is the function table's
//! (exact); what the kept stacks miss of it is one line of its own.

use std::collections::HashMap;

use strobe_aggregate::{BreakdownOptions, Count, FrameId, Tables};

use super::collector::accepts;
use super::kept::KeptStacks;
use super::{CallTree, FrameSel, TreeLine};

/// A call tree stops at this depth (deeper stacks are cut, not dropped: their time stays in the
/// node where the cut happens).
const MAX_TREE_DEPTH: usize = 48;

/// A call tree never has more lines than this; the smallest branches are left out.
const MAX_TREE_LINES: usize = 400;

/// The line for the samples whose stacks were not kept ([`KeptStacks`]).
pub const UNKEPT_LABEL: &str = "(rarer paths, stacks not kept)";

/// A node of a call tree under construction.
#[derive(Default)]
struct Node {
    count: Count,
    children: HashMap<FrameSel, Node>,
}

impl Node {
    fn insert(&mut self, path: impl Iterator<Item = FrameSel>, c: Count) {
        let mut node = self;
        node.count.add(c);
        for key in path.take(MAX_TREE_DEPTH) {
            node = node.children.entry(key).or_default();
            node.count.add(c);
        }
    }

    /// Depth-first, biggest child first, at most `budget` lines; `unkept` (at the root only:
    /// the samples of stacks not kept) is a line of its own among the root's children.
    fn flatten(
        &self,
        label: String,
        depth: usize,
        out: &mut Vec<TreeLine>,
        budget: usize,
        unkept: Count,
    ) {
        if out.len() >= budget {
            return;
        }
        out.push(TreeLine {
            depth,
            label,
            count: self.count,
        });
        if !unkept.is_zero() {
            out.push(TreeLine {
                depth: depth + 1,
                label: UNKEPT_LABEL.to_string(),
                count: unkept,
            });
        }
        let mut kids: Vec<(&FrameSel, &Node)> = self.children.iter().collect();
        kids.sort_by(|a, b| {
            b.1.count
                .weight_ns
                .cmp(&a.1.count.weight_ns)
                .then_with(|| a.0.label().cmp(&b.0.label()))
        });
        for (k, n) in kids {
            n.flatten(k.label(), depth + 1, out, budget, Count::default());
        }
    }
}

/// The call tree of `focus` from the stacks `kept`, over the samples `opts` accepts. `total`
/// and `grand_total` are the exact counts (from the function table) of samples with the focus
/// on their stack (`None` when the table has no row of it: the kept stacks' count is used) and
/// of all samples under the filters: what the kept stacks miss of `total` is shown as one line
/// of its own under the focus, in both directions.
pub(super) fn call_tree(
    kept: &KeptStacks,
    tables: &Tables,
    opts: &BreakdownOptions,
    focus: &FrameSel,
    total: Option<Count>,
    grand_total: Count,
) -> CallTree {
    let sel = |fid: &FrameId| -> Option<FrameSel> {
        let f = tables.frame(*fid)?;
        Some(FrameSel {
            function: tables.str(f.function).into(),
            filename: tables.str(f.filename).into(),
            line: if opts.by_function { None } else { f.line },
            kind: f.kind,
            module: f.module.map(|m| tables.str(m).into()),
        })
    };
    let mut callers = Node::default();
    let mut callees = Node::default();
    for (thread, flags, stack, c) in kept.iter() {
        if !accepts(opts, tables, thread, flags) {
            continue;
        }
        let frames: Vec<FrameSel> = stack.iter().filter_map(sel).collect();
        // The outermost occurrence: with recursion, the paths below it include the inner ones,
        // and the sample is counted once.
        let Some(at) = frames.iter().position(|f| f == focus) else {
            continue;
        };
        callers.insert(frames.iter().take(at).rev().cloned(), c);
        callees.insert(frames.iter().skip(at + 1).cloned(), c);
    }
    let total = total.unwrap_or(callers.count);
    // Never negative: every kept sample is counted in the table too.
    let unkept = Count {
        samples: total.samples.saturating_sub(callers.count.samples),
        weight_ns: total.weight_ns.saturating_sub(callers.count.weight_ns),
    };
    let mut tree = CallTree {
        focus: Some(focus.clone()),
        total,
        grand_total,
        unkept,
        callers: Vec::new(),
        callees: Vec::new(),
    };
    if !total.is_zero() {
        for (node, lines) in [
            (&mut callers, &mut tree.callers),
            (&mut callees, &mut tree.callees),
        ] {
            node.count = total;
            node.flatten(focus.label(), 0, lines, MAX_TREE_LINES / 2, unkept);
        }
    }
    tree
}

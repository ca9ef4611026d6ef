//! The call tree of one function: its callers above it and its callees below it, each a tree
//! of the paths that led to it or away from it, with their sample counts.

use std::collections::HashMap;

use strobe_aggregate::{BreakdownOptions, Count, Counts, FrameId, Tables};

use super::collector::accepts;
use super::{CallTree, FrameSel, TreeLine};

/// A call tree stops at this depth (deeper stacks are cut, not dropped: their time stays in the
/// node where the cut happens).
const MAX_TREE_DEPTH: usize = 48;

/// A call tree never has more lines than this; the smallest branches are left out.
const MAX_TREE_LINES: usize = 400;

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

    /// Depth-first, biggest child first, at most `budget` lines.
    fn flatten(&self, label: String, depth: usize, out: &mut Vec<TreeLine>, budget: usize) {
        if out.len() >= budget {
            return;
        }
        out.push(TreeLine {
            depth,
            label,
            count: self.count,
        });
        let mut kids: Vec<(&FrameSel, &Node)> = self.children.iter().collect();
        kids.sort_by(|a, b| {
            b.1.count
                .weight_ns
                .cmp(&a.1.count.weight_ns)
                .then_with(|| a.0.label().cmp(&b.0.label()))
        });
        for (k, n) in kids {
            n.flatten(k.label(), depth + 1, out, budget);
        }
    }
}

/// The call tree of `focus` in `counts`, over the samples `opts` accepts.
pub(super) fn call_tree(
    counts: &Counts,
    tables: &Tables,
    opts: &BreakdownOptions,
    focus: &FrameSel,
) -> CallTree {
    let sel = |fid: &FrameId| -> Option<FrameSel> {
        let f = tables.frame(*fid)?;
        Some(FrameSel {
            function: tables.str(f.function).to_string(),
            filename: tables.str(f.filename).to_string(),
            line: if opts.by_function { None } else { f.line },
            kind: f.kind,
            module: f.module.map(|m| tables.str(m).to_string()),
        })
    };
    let mut callers = Node::default();
    let mut callees = Node::default();
    let mut grand_total = Count::default();
    for (k, c) in counts.iter() {
        if !accepts(opts, tables, &k) {
            continue;
        }
        grand_total.add(c);
        let frames: Vec<FrameSel> = tables.stack(k.stack).iter().filter_map(sel).collect();
        // The outermost occurrence: with recursion, the paths below it include the inner ones,
        // and the sample is counted once.
        let Some(at) = frames.iter().position(|f| f == focus) else {
            continue;
        };
        callers.insert(frames.iter().take(at).rev().cloned(), c);
        callees.insert(frames.iter().skip(at + 1).cloned(), c);
    }
    let mut tree = CallTree {
        focus: Some(focus.clone()),
        total: callers.count,
        grand_total,
        callers: Vec::new(),
        callees: Vec::new(),
    };
    if !callers.count.is_zero() {
        callers.flatten(focus.label(), 0, &mut tree.callers, MAX_TREE_LINES / 2);
        callees.flatten(focus.label(), 0, &mut tree.callees, MAX_TREE_LINES / 2);
    }
    tree
}

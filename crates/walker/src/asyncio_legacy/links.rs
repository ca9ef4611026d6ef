//! Who awaits whom before 3.14, derived (see [`super`]): `_fut_waiter` and the innermost
//! `await`, `gather()`'s children, a `TaskGroup`'s tasks; and the order the dump draws tasks in.

use std::collections::{HashMap, HashSet};

use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::Layout;

use super::{set_members, MAX_CHILDREN, MAX_GROUPS};
use crate::asyncio::{Task, MAX_AWAITED_BY};
use crate::error::WalkError;
use crate::threadnames::Names;
use crate::value::{Kind, ValueReader};

/// Fill in `awaited_by` (see the module documentation for what links are seen); the links as
/// `(parent, child)` task addresses, each parent's children in the order it reached them, and
/// whether the tasks of every `gather()` and `TaskGroup` awaited were read (false: a task
/// awaited through one of them may show as awaited by none).
pub(super) fn link<M: RemoteMemory + ?Sized>(
    names: &mut Names<'_, M>,
    values: &mut ValueReader<'_, M>,
    layout: &Layout,
    tasks: &mut [Task],
    errors: &mut Vec<String>,
) -> (Vec<(u64, u64)>, bool) {
    let index: HashMap<u64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.addr, i)).collect();
    let mut links: Vec<(u64, u64)> = Vec::new();
    let mut groups = 0usize;
    let mut skipped = 0usize;
    let mut unread = 0usize;
    for t in tasks.iter() {
        let mut targets: Vec<u64> = Vec::new();
        // `_fut_waiter` is usually what the coroutine awaits: look at it once.
        let waiter = t
            .waiter
            .as_ref()
            .filter(|w| t.awaits.as_ref().is_none_or(|a| a.addr != w.addr));
        for a in t.awaits.iter().chain(waiter) {
            if index.contains_key(&a.addr) {
                targets.push(a.addr);
            } else if a.value.type_name.as_deref() == Some("_GatheringFuture") {
                if groups >= MAX_GROUPS {
                    skipped += 1;
                    continue;
                }
                groups += 1;
                let children = names.attr(a.addr, "_children").ok().flatten();
                match children.and_then(|c| list_items(values, layout, c, MAX_CHILDREN)) {
                    Some(children) => targets.extend(children),
                    None => unread += 1,
                }
            }
        }
        // The innermost TaskGroup exit on the stack (`__aexit__` and 3.13's `_aexit` have
        // the same `self`).
        let group = t.stack.iter().rev().find(|f| {
            matches!(
                f.function.as_str(),
                "TaskGroup.__aexit__" | "TaskGroup._aexit"
            ) && f.filename.ends_with("taskgroups.py")
        });
        if let Some(f) = group {
            if groups >= MAX_GROUPS {
                skipped += 1;
            } else {
                groups += 1;
                match taskgroup_tasks(names, values, layout, f.frame.addr) {
                    Some(members) => targets.extend(members),
                    None => unread += 1,
                }
            }
        }
        let mut once = HashSet::new();
        for target in targets {
            if target != t.addr && index.contains_key(&target) && once.insert(target) {
                links.push((t.addr, target));
            }
        }
    }
    if skipped > 0 {
        errors.push(format!(
            "{skipped} gather()s or TaskGroups beyond the first {MAX_GROUPS} were not followed: \
             the tasks they wait for show as roots"
        ));
    }
    if unread > 0 {
        errors.push(format!(
            "the tasks of {unread} gather()s or TaskGroups could not be read: the tasks they \
             wait for show as roots"
        ));
    }
    let mut kept = Vec::with_capacity(links.len());
    for (parent, child) in links {
        if let Some(&c) = index.get(&child) {
            let by = &mut tasks[c].awaited_by;
            if by.len() < MAX_AWAITED_BY {
                by.push(parent);
                kept.push((parent, child));
            }
        }
    }
    (kept, skipped == 0 && unread == 0)
}

/// The items of a `list` (at most `max`); `None` if it is not one or cannot be read.
pub(super) fn list_items<M: RemoteMemory + ?Sized>(
    values: &mut ValueReader<'_, M>,
    l: &Layout,
    list: u64,
    max: usize,
) -> Option<Vec<u64>> {
    values.allow_reads(16);
    if !values.type_of(list).is_ok_and(|t| t.kind == Kind::List) {
        return None;
    }
    let mem = values.memory();
    let read = || -> Result<Vec<u64>, WalkError> {
        let n = mem.read_u64(list.wrapping_add(u64::from(l.pyvarobject_ob_size)))?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(WalkError::Corrupt {
                what: "list size",
                addr: list,
            })?;
        let items = mem.read_u64(list.wrapping_add(u64::from(l.list_ob_item)))?;
        let bytes = mem.read_vec(items, n * 8, max * 8)?;
        Ok(bytes
            .chunks_exact(8)
            .filter_map(|c| le::u64_at(c, 0))
            .collect())
    };
    read().ok()
}

/// The tasks of the `TaskGroup` that is `self` (the first slot) of the frame at `frame`
/// (`TaskGroup.__aexit__` or `._aexit`, 3.11+).
fn taskgroup_tasks<M: RemoteMemory + ?Sized>(
    names: &mut Names<'_, M>,
    values: &mut ValueReader<'_, M>,
    l: &Layout,
    frame: u64,
) -> Option<Vec<u64>> {
    let localsplus = l.iframe_localsplus?;
    values.allow_reads(16);
    let this = values
        .memory()
        .read_u64(frame.wrapping_add(u64::from(localsplus)))
        .ok()?;
    if this == 0 || values.type_of(this).ok()?.name.as_ref() != "TaskGroup" {
        return None;
    }
    let set = names.attr(this, "_tasks").ok()??;
    values.allow_reads(16);
    if values.type_of(set).ok()?.kind != Kind::Set {
        return None;
    }
    set_members(names.memory(), l, set, MAX_CHILDREN).ok()
}

/// The tasks in the order the tree is drawn: each root (a task no task awaits), by address,
/// followed depth-first by the tasks it awaits in the order it reached them (a `gather()`'s
/// children in argument order); tasks only reachable through a cycle last, by address.
pub(super) fn tree_order(tasks: Vec<Task>, links: &[(u64, u64)]) -> Vec<Task> {
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    for &(parent, child) in links {
        children.entry(parent).or_default().push(child);
    }
    let mut roots: Vec<u64> = tasks
        .iter()
        .filter(|t| t.awaited_by.is_empty())
        .map(|t| t.addr)
        .collect();
    roots.sort_unstable();
    let mut rest: Vec<u64> = tasks.iter().map(|t| t.addr).collect();
    rest.sort_unstable();
    let mut order: Vec<u64> = Vec::with_capacity(tasks.len());
    let mut done: HashSet<u64> = HashSet::new();
    for start in roots.into_iter().chain(rest) {
        let mut stack = vec![start];
        while let Some(a) = stack.pop() {
            if !done.insert(a) {
                continue;
            }
            order.push(a);
            if let Some(cs) = children.get(&a) {
                stack.extend(cs.iter().rev().filter(|c| !done.contains(c)));
            }
        }
    }
    let mut by_addr: HashMap<u64, Task> = tasks.into_iter().map(|t| (t.addr, t)).collect();
    order
        .into_iter()
        .filter_map(|a| by_addr.remove(&a))
        .collect()
}

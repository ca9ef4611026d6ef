//! Unit tests of the interner, its tables and their mirrors.

use super::*;

fn fk<'a>(function: &'a str, filename: &'a str, line: i32) -> FrameKey<'a> {
    FrameKey::python(function, filename, Some(line))
}

#[test]
fn frames_and_stacks_intern_once() {
    let mut i = Interner::new();
    let a = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
    let b = i.intern_frame(&fk("g", "a.py", 2)).unwrap();
    assert_ne!(a, b);
    assert_eq!(i.intern_frame(&fk("f", "a.py", 1)).unwrap(), a);
    // Same names, other line: another frame; no line: yet another.
    let a2 = i.intern_frame(&fk("f", "a.py", 2)).unwrap();
    let a0 = i
        .intern_frame(&FrameKey::python("f", "a.py", None))
        .unwrap();
    assert!(a2 != a && a0 != a && a0 != a2);
    // Strings are shared between frames.
    assert_eq!(i.tables().num_strings(), 3);

    let s1 = i.intern_stack(&[a, b]).unwrap();
    let s2 = i.intern_stack(&[b, a]).unwrap();
    let s3 = i.intern_stack(&[a]).unwrap();
    let s0 = i.intern_stack(&[]).unwrap();
    assert_eq!(i.intern_stack(&[a, b]).unwrap(), s1);
    assert_eq!(i.intern_stack_leaf_first(&[b, a]).unwrap(), s1);
    assert_eq!(i.tables().stack(s2), &[b, a]);
    assert_eq!(i.tables().stack(s3), &[a]);
    assert_eq!(i.tables().stack(s0), &[] as &[FrameId]);
    assert_eq!(i.tables().num_stacks(), 4);
    assert_eq!(i.find_frame(&fk("g", "a.py", 2)), Some(b));
    assert_eq!(i.find_frame(&fk("g", "a.py", 3)), None);
}

#[test]
fn the_first_line_is_part_of_a_frame() {
    let mut i = Interner::new();
    // Two functions of one name in one file (say, `inner` defined in two places).
    let a = i
        .intern_frame(&fk("inner", "a.py", 7).with_first_line(Some(5)))
        .unwrap();
    let b = i
        .intern_frame(&fk("inner", "a.py", 7).with_first_line(Some(6)))
        .unwrap();
    let unknown = i.intern_frame(&fk("inner", "a.py", 7)).unwrap();
    assert!(a != b && a != unknown && b != unknown);
    assert_eq!(i.tables().frame(a).unwrap().first_line, Some(5));
    assert_eq!(i.tables().frame(unknown).unwrap().first_line, None);
    assert_eq!(
        i.find_frame(&fk("inner", "a.py", 7).with_first_line(Some(6))),
        Some(b)
    );
    // Replayed from ids (the raw reader's path), it is the same frame.
    let frame = *i.tables().frame(b).unwrap();
    assert_eq!(i.intern_frame_ids(frame).unwrap(), b);
}

#[test]
fn many_entries_survive_table_growth() {
    let mut i = Interner::new();
    let ids: Vec<FrameId> = (0..5000)
        .map(|n| i.intern_frame(&fk(&format!("f{n}"), "x.py", n)).unwrap())
        .collect();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            i.intern_frame(&fk(&format!("f{n}"), "x.py", n as i32))
                .unwrap(),
            *id
        );
    }
    let stacks: Vec<StackId> = (0..2000)
        .map(|n| i.intern_stack(&ids[..n]).unwrap())
        .collect();
    for (n, s) in stacks.iter().enumerate() {
        assert_eq!(i.intern_stack(&ids[..n]).unwrap(), *s);
        assert_eq!(i.tables().stack(*s).len(), n);
    }
}

#[test]
fn a_budget_forgets_stacks_not_seen_for_a_generation_and_never_reuses_ids() {
    let mut i = Interner::new();
    let f: Vec<FrameId> = (0..40)
        .map(|n| i.intern_frame(&fk("f", "a.py", n)).unwrap())
        .collect();
    // Each stack of 3 frames costs STACK_BYTES + 12 bytes: 4 of them fill a generation.
    let per_stack = STACK_BYTES + 12;
    i.set_stack_budget(Some(2 * 4 * per_stack));
    let stack = |n: usize| [f[0], f[1 + n % 39], f[1 + n / 39]];
    let hot = i.intern_stack(&stack(0)).unwrap();
    let mut ids = vec![hot];
    for n in 1..4 {
        ids.push(i.intern_stack(&stack(n)).unwrap());
    }
    // The current generation is full: a new one starts, nothing is forgotten yet...
    assert!(i.collect_stacks());
    assert_eq!(i.tables().first_stack(), StackId(0));
    assert!(!i.collect_stacks(), "the new generation is empty");
    i.set_stack_budget(Some(0));
    assert!(!i.collect_stacks(), "not even with no budget at all");
    i.set_stack_budget(Some(2 * 4 * per_stack));
    assert!(!i.is_current(hot));
    // ...and the hot stack, found in the previous generation, moves to the current one.
    let hot2 = i.intern_stack(&stack(0)).unwrap();
    assert!(hot2 > hot && i.is_current(hot2));
    assert_eq!(i.tables().stack(hot2), &stack(0));
    for n in 4..7 {
        ids.push(i.intern_stack(&stack(n)).unwrap());
    }
    assert!(i.collect_stacks());
    // Generation 0 is gone; the hot stack survived in its new place.
    assert_eq!(i.tables().first_stack(), StackId(4));
    assert!(!i.tables().holds_stack(ids[1]));
    assert_eq!(i.tables().stack(ids[1]), &[] as &[FrameId]);
    assert_eq!(i.tables().stack(hot2), &stack(0));
    // Still in the previous generation: seen again, it moves again.
    let hot3 = i.intern_stack(&stack(0)).unwrap();
    assert!(hot3 > hot2 && i.is_current(hot3));
    assert_eq!(i.intern_stack(&stack(0)).unwrap(), hot3);
    // A forgotten stack that comes back gets a new id, never an old one.
    let back = i.intern_stack(&stack(1)).unwrap();
    assert!(back.index() >= i.tables().num_stacks() - 1 && back != ids[1]);
    assert_eq!(i.tables().stack(back), &stack(1));

    // Many stacks later, what is held stays within two generations.
    let mut max_held = 0;
    for n in 7..5000 {
        let s = i.intern_stack(&stack(n % 1500)).unwrap();
        assert_eq!(i.tables().stack(s), &stack(n % 1500));
        i.collect_stacks();
        max_held = max_held.max(i.tables().held_stacks());
    }
    assert!(max_held <= 2 * 4 + 1, "{max_held} stacks held");
    assert!(i.tables().num_stacks() > 4000);
}

#[test]
fn without_a_budget_nothing_is_forgotten() {
    let mut i = Interner::new();
    let f = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
    let a = i.intern_stack(&[f]).unwrap();
    for n in 0..100 {
        i.intern_stack(&vec![f; n + 2]).unwrap();
        assert!(!i.collect_stacks());
    }
    assert!(i.is_current(a));
    assert_eq!(i.intern_stack(&[f]).unwrap(), a);
    assert_eq!(i.tables().held_stacks(), 101);
}

#[test]
fn mirror_replays_definitions() {
    let mut i = Interner::new();
    let mut mirror = Tables::default();
    let mut marks = Marks::default();
    let f = i.intern_frame(&fk("f", "a.py", 1)).unwrap();
    let t = i
        .intern_thread(&ThreadKey {
            os_tid: 7,
            name: Some("Main"),
            interpreter_id: 0,
        })
        .unwrap();
    i.intern_stack(&[f, f]).unwrap();
    i.definitions_since(&mut marks, |d| mirror.apply(d).unwrap());
    let g = i.intern_frame(&fk("g", "b.py", 1)).unwrap();
    let s = i.intern_stack(&[f, g]).unwrap();
    i.definitions_since(&mut marks, |d| mirror.apply(d).unwrap());
    assert_eq!(mirror.stack(s), &[f, g]);
    assert_eq!(mirror.str(mirror.thread(t).unwrap().name.unwrap()), "Main");
    assert_eq!(mirror.str(mirror.frame(g).unwrap().filename), "b.py");
    assert_eq!(Marks::of(&mirror), Marks::of(i.tables()));

    // With forgetting, including stacks forgotten before they were ever sent.
    i.set_stack_budget(Some(1));
    let mut defs = Vec::new();
    for n in 0..6 {
        i.intern_stack(&vec![g; n + 3]).unwrap();
        i.collect_stacks();
        if n % 3 == 2 {
            i.definitions_since(&mut marks, |d| defs.push(d));
        }
    }
    assert!(defs.iter().any(|d| matches!(d, Def::ForgetStacks(_))));
    assert!(
        defs.contains(&Def::Stack(Box::new([]))),
        "a stack never sent"
    );
    for d in defs {
        mirror.apply(d).unwrap();
    }
    assert_eq!(Marks::of(&mirror), Marks::of(i.tables()));
    let held = i.tables().first_stack().index()..i.tables().num_stacks();
    assert!(!held.is_empty());
    for id in held {
        let id = StackId(id as u32);
        assert_eq!(mirror.stack(id), i.tables().stack(id));
        assert!(!mirror.stack(id).is_empty());
    }
}

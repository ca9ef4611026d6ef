//! The identity checks of code objects (see `CodeCache::check_identities`) for a thread whose
//! walks were skipped: against a walk that remembers nothing, and by the reads they take.

use super::*;

/// A thread left unwalked (not wanted, not the GIL holder) loses its memo: every frame of its
/// next walk counts as new, and those met at other places than before have their code
/// objects' identities checked. The code objects of its last walk come in that sample's own
/// batch, so the checks take no read of their own, and one freed and reallocated while the
/// thread was skipped is still caught from that copy.
#[test]
fn a_thread_wanted_again_has_its_code_objects_checked_within_the_batch() {
    for l in [l310(), l311(), l312(), l313(), l314()] {
        let mut img = Image::new(l);
        let outer = img.code("outer", "/app.py", 10, 8);
        let a = img.code("a", "/app.py", 20, 8);
        let startup = img.code("startup", "/site.py", 100, 8);
        let main = img.code("main", "/app.py", 200, 8);
        let objects = l.frame_model == FrameModel::FrameObject;
        let chunk = (!objects).then(|| img.chunk(4096, 0));
        // The thread's innermost frame running `stack`, its frames spaced by `locals` bytes in
        // the chunk (new frame objects before 3.11).
        let frames = |img: &mut Image, stack: &[(u64, i64)], locals: u64| match chunk {
            Some(c) => *img.chunk_frames(c, 0, stack, locals).last().unwrap(),
            None => img.frame_objects(stack),
        };
        let inner = frames(&mut img, &[(outer, 1), (a, 2), (startup, 2)], 0);
        let thread = Thread::new(0x77, 1, inner);
        let thread = match chunk {
            Some(c) => thread.in_chunk(c),
            None => thread,
        };
        let (interp, threads, roots) = img.one_interpreter(&[thread]);
        set_gil_holder(&mut img, interp, roots, 0);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[0].0, "startup", "{:?}", l.version);
        w.sample_wanted_into(&mut raw, &mut |_| false).unwrap();
        assert!(!raw.threads[0].walked, "{:?}", l.version);
        // While it is skipped, `startup` is freed and `main`, as long, is allocated at its
        // address; the thread's frames move (a new call path) and the innermost runs it.
        edit(&mut img, &live, |img| {
            recycle_code(img, main, startup);
            let moved = frames(img, &[(outer, 1), (a, 2), (startup, 3)], 64);
            img.set_innermost(threads[0], moved);
        });
        live.take_counts();
        let got = flat_sample(&mut w, &mut raw);
        assert_eq!(
            live.take_counts().0,
            1,
            "{:?}: the sample's batch, with the code objects in it",
            l.version
        );
        let names: Vec<&str> = got[0].3.iter().map(|f| &*f.0).collect();
        assert_eq!(names, ["main", "a", "outer"], "{:?}", l.version);
        assert_eq!(
            no_entry(&got[0].3[0]),
            ("main".into(), "/app.py".into(), Some(203)),
            "{:?}",
            l.version
        );
        let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
        assert_eq!(got, flat_walk(&fresh), "{:?}", l.version);
    }
}

/// A code object copied speculatively that can no longer be read (its memory unmapped) costs
/// the sample nothing but a retry without it: the sample is the fresh walk's.
#[test]
fn an_unreadable_code_object_copied_speculatively_is_dropped_not_fatal() {
    let l = l312();
    let mut img = Image::new(l);
    let outer = img.code("outer", "/app.py", 10, 8);
    let gone = img.code("gone", "/app.py", 20, 8);
    let main = img.code("main", "/app.py", 200, 8);
    let chunk = img.chunk(4096, 0);
    let frames = img.chunk_frames(chunk, 0, &[(outer, 1), (gone, 2)], 0);
    let (interp, threads, roots) =
        img.one_interpreter(&[Thread::new(0x77, 1, frames[1]).in_chunk(chunk)]);
    set_gil_holder(&mut img, interp, roots, 0);
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
    w.sample_wanted_into(&mut raw, &mut |_| false).unwrap();
    // `gone`'s memory is unmapped; the thread now runs `main`.
    edit(&mut img, &live, |img| {
        let moved = img.chunk_frames(chunk, 0, &[(outer, 1), (main, 3)], 64);
        img.set_innermost(threads[0], moved[1]);
    });
    live.holes
        .borrow_mut()
        .push((gone, gone + u64::from(l.code_size)));
    let got = flat_sample(&mut w, &mut raw);
    let names: Vec<&str> = got[0].3.iter().map(|f| &*f.0).collect();
    assert_eq!(names, ["main", "outer"]);
    let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
    assert_eq!(got, flat_walk(&fresh));
}

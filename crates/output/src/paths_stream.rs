//! A stream of stacks that are nearly all new: random paths through 16 functions, as the
//! many-stacks benchmark target makes them. Shared by the raw reader's unit tests and the
//! format tests (`tests/formats.rs` includes this file as a module of its own), and the
//! integration test of a stopped `convert` (`tests/integration/convert_stop.rs`, likewise).

use strobe_aggregate::{FrameKey, ThreadKey};

/// The thread of sample `n`: one of two, in turn.
pub fn two_threads(n: u64) -> ThreadKey<'static> {
    ThreadKey {
        os_tid: 100 + n % 2,
        name: None,
        interpreter_id: 0,
    }
}

/// Sample `n`'s stack, outermost first: a path through the functions `names` (16 of them),
/// 1 to `max_depth` deep, the same for the same `n`.
pub fn path_frames(names: &[String], n: u64, max_depth: u64) -> Vec<FrameKey<'_>> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let depth = 1 + (x % max_depth) as usize;
    (0..depth)
        .map(|i| {
            x = x.rotate_left(9).wrapping_mul(31).wrapping_add(i as u64);
            let f = (x % 16) as usize;
            FrameKey::python(&names[f], "/srv/app/paths.py", Some(f as i32 * 4 + 1))
        })
        .collect()
}

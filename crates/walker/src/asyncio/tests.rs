//! The decoding of `.AsyncioDebug` sections as Debian sid's interpreters have them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// `.AsyncioDebug` of Debian sid's python3.14 (`_asyncio.cpython-314-x86_64-linux-gnu.so`)
/// and python3.15 (built in), as `readelf -x .AsyncioDebug` shows them.
const SID_314: [u64; 13] = [
    0xa8, 0x88, 0x60, 0x6c, 0x6d, 0x80, 0x98, 0x37248, 0x2a80, 0x3a8, 0x360, 0x368, 0x370,
];
const SID_315: [u64; 13] = [
    0xa8, 0x88, 0x60, 0x6c, 0x6d, 0x80, 0x98, 0x373c0, 0x2a68, 0x450, 0x400, 0x408, 0x418,
];

#[test]
fn the_sections_of_314_and_315_decode_with_the_proven_fields() {
    for (minor, words) in [(14, SID_314), (15, SID_315)] {
        let l =
            strobe_python_abi::layout_for(3, minor, strobe_python_abi::Flavour::DEFAULT).unwrap();
        let o = AsyncioOffsets::decode(&bytes(&words), l).unwrap();
        // Modules/_asynciomodule.c: fut_loop right after the header, fut_state after
        // fut_awaited_by, task_fut_waiter before task_coro.
        assert_eq!(
            (o.fut_loop, o.fut_state, o.task_fut_waiter),
            (16, 0x68, 0x78)
        );
        assert_eq!(o.task_node, 0x98);
        assert_eq!(o.tstate_tasks_head, words[12]);
    }
}

#[test]
fn a_section_that_does_not_match_the_known_task_layout_is_refused() {
    let l = strobe_python_abi::layout_for(3, 14, strobe_python_abi::Flavour::DEFAULT).unwrap();
    let mut moved = SID_314;
    moved[3] = 0x70; // task_is_task no longer right after fut_state
    let err = AsyncioOffsets::decode(&bytes(&moved), l).unwrap_err();
    assert!(err.to_string().contains("3.14 and 3.15"), "{err}");
    let mut outside = SID_314;
    outside[6] = 0xa0; // task_node runs past the task
    assert!(AsyncioOffsets::decode(&bytes(&outside), l).is_err());
    let mut huge = SID_314;
    huge[0] = 1 << 40;
    assert!(AsyncioOffsets::decode(&bytes(&huge), l).is_err());
    assert!(AsyncioOffsets::decode(&bytes(&SID_314)[..100], l).is_err());
}

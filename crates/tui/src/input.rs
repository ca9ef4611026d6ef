//! Keys to actions. Which key means what depends on the front screen (typing a filter takes
//! every printable key as text). Only the keyboard: no mouse, so it works over any SSH link.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::state::{Action, Mode, SortKey};

/// Rows a page key moves.
const PAGE: i32 = 10;

/// The action for `key` on the screen `mode`, if any.
pub fn action(mode: &Mode, key: KeyEvent) -> Option<Action> {
    // Terminals that report releases (kitty protocol) would otherwise act twice.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
        return Some(Action::Quit);
    }
    if *mode == Mode::Filter {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterAccept),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    let common = match key.code {
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Move(-1)),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Move(1)),
        KeyCode::PageUp => Some(Action::Move(-PAGE)),
        KeyCode::PageDown => Some(Action::Move(PAGE)),
        KeyCode::Home => Some(Action::Home),
        KeyCode::End => Some(Action::End),
        KeyCode::Char('q') => Some(Action::Quit),
        KeyCode::Char('?') => Some(Action::Help),
        _ => None,
    };
    if common.is_some() {
        return common;
    }
    match mode {
        Mode::Help => match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('h') => Some(Action::Back),
            _ => None,
        },
        Mode::Threads(_) => match key.code {
            KeyCode::Enter => Some(Action::ThreadsChoose),
            KeyCode::Esc | KeyCode::Char('t') => Some(Action::Back),
            _ => None,
        },
        Mode::Tree(_) => match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Left => {
                Some(Action::Back)
            }
            _ => table_key(key.code),
        },
        Mode::Table | Mode::Filter => match key.code {
            KeyCode::Enter | KeyCode::Right => Some(Action::TreeOpen),
            KeyCode::Esc => Some(Action::FilterCancel),
            _ => table_key(key.code),
        },
    }
}

/// Keys that change what is counted or shown; they work on the table and in the tree.
fn table_key(code: KeyCode) -> Option<Action> {
    let KeyCode::Char(c) = code else {
        return None;
    };
    Some(match c {
        '1'..='4' => Action::Sort(*SortKey::ALL.get(usize::from(c as u8 - b'1'))?),
        'n' => Action::Sort(SortKey::Name),
        '<' | ',' => Action::SortStep(-1),
        '>' | '.' => Action::SortStep(1),
        '/' => Action::FilterStart,
        't' => Action::ThreadsOpen,
        'p' | ' ' => Action::TogglePause,
        'r' => Action::Reset,
        '+' | '=' => Action::RefreshStep(1),
        '-' | '_' => Action::RefreshStep(-1),
        'i' => Action::ToggleIdle,
        'g' => Action::ToggleGil,
        'm' => Action::CycleMode,
        'a' => Action::ToggleAsync,
        'l' => Action::ToggleLines,
        'h' => Action::Help,
        _ => return None,
    })
}

/// The key reference shown by `?`: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    (
        "1 2 3 4",
        "sort by %Own, %Total (last interval), OwnTime, TotalTime (cumulative)",
    ),
    ("n", "sort by name; the same key again reverses the order"),
    ("< >", "sort by the previous / next column"),
    (
        "/",
        "filter by function or file name (Enter keeps it, Esc clears it)",
    ),
    ("t", "choose one thread or all threads"),
    ("l", "show functions or lines"),
    ("i", "show or hide idle threads' samples"),
    ("g", "count only samples of the thread holding the GIL"),
    (
        "a",
        "task-aware stacks: asyncio tasks under the tasks awaiting them (CPython 3.8+; counts restart)",
    ),
    (
        "m",
        "next mode: cpu (running threads), wall (idle too), gil, exception (threads raising or handling one, with a <raise T> frame)",
    ),
    ("p, space", "pause / resume the display (sampling goes on)"),
    ("r", "reset the counters"),
    ("+ -", "refresh less / more often"),
    (
        "Enter",
        "call paths of the selected function (Esc goes back)",
    ),
    ("↑ ↓ j k", "move; PgUp PgDn Home End"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn the_same_letter_means_text_while_filtering() {
        let q = key(KeyCode::Char('q'));
        assert_eq!(action(&Mode::Table, q), Some(Action::Quit));
        assert_eq!(action(&Mode::Filter, q), Some(Action::FilterChar('q')));
        assert_eq!(
            action(&Mode::Filter, key(KeyCode::Enter)),
            Some(Action::FilterAccept)
        );
        assert_eq!(
            action(&Mode::Filter, key(KeyCode::Esc)),
            Some(Action::FilterCancel)
        );
    }

    #[test]
    fn ctrl_c_quits_everywhere() {
        let c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for m in [
            Mode::Table,
            Mode::Filter,
            Mode::Help,
            Mode::Threads(0),
            Mode::Tree(0),
        ] {
            assert_eq!(action(&m, c), Some(Action::Quit), "{m:?}");
        }
    }

    #[test]
    fn table_keys() {
        let t = |c| action(&Mode::Table, key(KeyCode::Char(c)));
        assert_eq!(t('1'), Some(Action::Sort(SortKey::OwnInterval)));
        assert_eq!(t('4'), Some(Action::Sort(SortKey::TotalCumulative)));
        assert_eq!(t('5'), None);
        assert_eq!(t('n'), Some(Action::Sort(SortKey::Name)));
        assert_eq!(t('/'), Some(Action::FilterStart));
        assert_eq!(t('t'), Some(Action::ThreadsOpen));
        assert_eq!(t('p'), Some(Action::TogglePause));
        assert_eq!(t('r'), Some(Action::Reset));
        assert_eq!(t('+'), Some(Action::RefreshStep(1)));
        assert_eq!(t('-'), Some(Action::RefreshStep(-1)));
        assert_eq!(t('i'), Some(Action::ToggleIdle));
        assert_eq!(t('l'), Some(Action::ToggleLines));
        assert_eq!(t('?'), Some(Action::Help));
        assert_eq!(
            action(&Mode::Table, key(KeyCode::Enter)),
            Some(Action::TreeOpen)
        );
        assert_eq!(
            action(&Mode::Table, key(KeyCode::Down)),
            Some(Action::Move(1))
        );
    }

    #[test]
    fn overlays_close_with_escape() {
        for m in [Mode::Help, Mode::Threads(1), Mode::Tree(2)] {
            assert_eq!(action(&m, key(KeyCode::Esc)), Some(Action::Back), "{m:?}");
        }
        assert_eq!(
            action(&Mode::Threads(1), key(KeyCode::Enter)),
            Some(Action::ThreadsChoose)
        );
    }

    #[test]
    fn releases_are_ignored() {
        let mut k = key(KeyCode::Char('q'));
        k.kind = KeyEventKind::Release;
        assert_eq!(action(&Mode::Table, k), None);
    }
}

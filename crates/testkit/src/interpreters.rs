//! The one registry of the interpreters the test suite runs.
//!
//! Every live test takes its interpreters from [`ALL`] (or one of the lookups below) instead of
//! naming a path: pyenv builds are found under `$PYENV_ROOT` (default `/root/.pyenv`), the
//! Debian sid chroot under `$STROBE_CACHE/sid` (default `/var/cache/strobe/sid`), both made or
//! checked by `.ci/provision.sh`. A missing interpreter is a failure, never a skip:
//! [`Interpreter::require`] panics and says to run the provisioning script.
//!
//! To stamp one `#[test]` per interpreter, use [`per_interpreter!`](crate::per_interpreter).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where an interpreter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A pyenv build, by its full version (`"3.12.1"`), under `$PYENV_ROOT/versions`.
    Pyenv(&'static str),
    /// An absolute path on the host (Debian's own `/usr/bin/python3.11`).
    System(&'static str),
    /// A program in `/usr/bin` of the Debian sid chroot (`"python3.14d"`).
    Sid(&'static str),
}

/// One interpreter of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interpreter {
    /// Its name in test names: `pyenv_3_12`, `debian_3_11`, `sid_3_14_debug`, ...
    pub name: &'static str,
    /// `(major, minor)`.
    pub version: (u32, u32),
    /// Whether it is a debug build (`--with-pydebug`, Debian's `-dbg` packages).
    pub debug: bool,
    /// Whether it is statically linked against libpython (no `libpython*.so` loaded).
    pub static_libpython: bool,
    /// Where it comes from.
    pub source: Source,
}

/// Every interpreter the suite uses, oldest first within each source.
pub static ALL: &[Interpreter] = &[
    pyenv("pyenv_2_7", (2, 7), "2.7.18"),
    pyenv("pyenv_3_6", (3, 6), "3.6.15"),
    pyenv("pyenv_3_7", (3, 7), "3.7.16"),
    pyenv("pyenv_3_8", (3, 8), "3.8.18"),
    pyenv("pyenv_3_9", (3, 9), "3.9.18"),
    pyenv("pyenv_3_10", (3, 10), "3.10.13"),
    pyenv("pyenv_3_11", (3, 11), "3.11.7"),
    pyenv("pyenv_3_12", (3, 12), "3.12.1"),
    pyenv("pyenv_3_13", (3, 13), "3.13.0"),
    Interpreter {
        name: "debian_3_11",
        version: (3, 11),
        debug: false,
        static_libpython: true,
        source: Source::System("/usr/bin/python3.11"),
    },
    sid("sid_3_13", (3, 13), false, "python3.13"),
    sid("sid_3_13_debug", (3, 13), true, "python3.13d"),
    sid("sid_3_14", (3, 14), false, "python3.14"),
    sid("sid_3_14_pie", (3, 14), false, "python3.14-pie"),
    sid("sid_3_14_debug", (3, 14), true, "python3.14d"),
    sid("sid_3_15", (3, 15), false, "python3.15"),
    sid("sid_3_15_debug", (3, 15), true, "python3.15d"),
];

const fn pyenv(name: &'static str, version: (u32, u32), full: &'static str) -> Interpreter {
    Interpreter {
        name,
        version,
        debug: false,
        // pyenv builds here are configured with --enable-shared.
        static_libpython: false,
        source: Source::Pyenv(full),
    }
}

const fn sid(
    name: &'static str,
    version: (u32, u32),
    debug: bool,
    program: &'static str,
) -> Interpreter {
    Interpreter {
        name,
        version,
        debug,
        static_libpython: true,
        source: Source::Sid(program),
    }
}

/// `$PYENV_ROOT`, or `/root/.pyenv` when unset.
pub fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/root/.pyenv"), PathBuf::from)
}

/// `$STROBE_CACHE`, or `/var/cache/strobe` when unset: where `.ci/provision.sh` keeps its work.
pub fn strobe_cache() -> PathBuf {
    std::env::var_os("STROBE_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/strobe"), PathBuf::from)
}

/// The pyenv 3.12.1 virtual environment with numpy that `.ci/provision.sh` makes
/// (`$STROBE_CACHE/venv-numpy-3.12`): its `python`, asserted to be there.
pub fn numpy_python() -> PathBuf {
    let python = strobe_cache().join("venv-numpy-3.12/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run .ci/provision.sh (it makes the numpy test environment)",
        python.display()
    );
    python
}

/// The Debian sid chroot made by `.ci/provision.sh`: `$STROBE_CACHE/sid`.
pub fn sid_root() -> PathBuf {
    strobe_cache().join("sid")
}

/// [`require_sid`] as a `&'static str`, for tests that build command lines and messages from it.
pub fn require_sid_str() -> &'static str {
    leak(require_sid())
}

/// The path of the registry interpreter called `name`, required to exist, as a `&'static str`.
pub fn require_path_str(name: &str) -> &'static str {
    leak(get(name).require().path())
}

fn leak(path: PathBuf) -> &'static str {
    Box::leak(path.to_string_lossy().into_owned().into_boxed_str())
}

/// Panics unless the sid chroot is provisioned (its `apt-get` is there).
pub fn require_sid() -> PathBuf {
    let root = sid_root();
    assert!(
        root.join("usr/bin/apt-get").is_file(),
        "the Debian sid chroot {} is missing: run .ci/provision.sh (STROBE_CACHE chooses where \
         it lives)",
        root.display()
    );
    root
}

/// The registry entry called `name` (as in [`Interpreter::name`]). Panics on an unknown name,
/// which is a bug in the test asking.
pub fn get(name: &str) -> &'static Interpreter {
    ALL.iter().find(|i| i.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = ALL.iter().map(|i| i.name).collect();
        panic!("no interpreter {name:?} in the registry; it has {names:?}")
    })
}

/// The pyenv build of full version `version` (`"3.12.1"`). Panics when the registry has none.
pub fn pyenv_version(version: &str) -> &'static Interpreter {
    ALL.iter()
        .find(|i| matches!(i.source, Source::Pyenv(v) if v == version))
        .unwrap_or_else(|| panic!("no pyenv {version} in the registry"))
}

/// The sid chroot's interpreter called `program` (`"python3.14d"`). Panics when the registry
/// has none.
pub fn sid_program(program: &str) -> &'static Interpreter {
    ALL.iter()
        .find(|i| matches!(i.source, Source::Sid(p) if p == program))
        .unwrap_or_else(|| panic!("no sid {program} in the registry"))
}

/// Debian's own statically linked `/usr/bin/python3.11`.
pub fn debian_3_11() -> &'static Interpreter {
    get("debian_3_11")
}

impl Interpreter {
    /// Its executable as seen from this process (inside the chroot directory for sid).
    pub fn path(&self) -> PathBuf {
        match self.source {
            Source::Pyenv(full) => {
                let minor = full.rsplit_once('.').map_or(full, |(mm, _)| mm);
                pyenv_root()
                    .join("versions")
                    .join(full)
                    .join("bin")
                    .join(format!("python{minor}"))
            }
            Source::System(path) => PathBuf::from(path),
            Source::Sid(program) => sid_root().join("usr/bin").join(program),
        }
    }

    /// The root of its installation prefix as seen from here (`.../versions/3.12.1` for pyenv,
    /// `/usr` for the system one, `<chroot>/usr` for sid).
    pub fn prefix(&self) -> PathBuf {
        match self.source {
            Source::Pyenv(full) => pyenv_root().join("versions").join(full),
            Source::System(_) => PathBuf::from("/usr"),
            Source::Sid(_) => sid_root().join("usr"),
        }
    }

    /// The chroot it runs in, if any.
    pub fn chroot(&self) -> Option<PathBuf> {
        match self.source {
            Source::Sid(_) => Some(sid_root()),
            _ => None,
        }
    }

    /// Its executable as the running interpreter sees it (inside the chroot for sid).
    pub fn path_in_target(&self) -> PathBuf {
        match self.source {
            Source::Sid(program) => Path::new("/usr/bin").join(program),
            _ => self.path(),
        }
    }

    /// The full version when the registry knows it (pyenv builds only).
    pub fn full_version(&self) -> Option<&'static str> {
        match self.source {
            Source::Pyenv(full) => Some(full),
            _ => None,
        }
    }

    /// Whether it runs inside the sid chroot.
    pub fn is_sid(&self) -> bool {
        matches!(self.source, Source::Sid(_))
    }

    /// Panics, saying to run `.ci/provision.sh`, unless the interpreter is installed; returns it.
    pub fn require(&self) -> &Self {
        if self.is_sid() {
            require_sid();
        }
        let path = self.path();
        assert!(
            path.is_file(),
            "required interpreter {} ({}) is missing: run .ci/provision.sh (PYENV_ROOT and \
             STROBE_CACHE choose where pyenv builds and the sid chroot are found)",
            self.name,
            path.display()
        );
        self
    }

    /// A command that runs it (through `chroot` for sid), after [`Interpreter::require`].
    /// Arguments that are paths must be valid inside the chroot for sid interpreters.
    pub fn command(&self) -> Command {
        self.require();
        match self.source {
            Source::Sid(program) => {
                let mut cmd = Command::new("chroot");
                cmd.arg(sid_root()).arg(program);
                cmd
            }
            _ => Command::new(self.path()),
        }
    }

    /// The argument vector [`Interpreter::command`] runs, as strings (for shells and `runuser`).
    pub fn argv(&self) -> Vec<String> {
        match self.source {
            Source::Sid(program) => vec![
                "chroot".to_string(),
                sid_root().display().to_string(),
                program.to_string(),
            ],
            _ => vec![self.path().display().to_string()],
        }
    }
}

/// Stamps one `#[test]` per interpreter into a module named after the test, each test named
/// after its interpreter (`stacks::sid_3_14_debug`), with the registry entry bound to the
/// given name. Without a list, every entry of [`ALL`]; with `for [a, b]`, those entries.
///
/// ```text
/// strobe_testkit::per_interpreter! {
///     fn stacks(interp) {
///         check(interp.require());
///     }
/// }
/// strobe_testkit::per_interpreter! {
///     fn subinterpreters(interp) for [pyenv_3_12, sid_3_14] {
///         check(interp);
///     }
/// }
/// ```
#[macro_export]
macro_rules! per_interpreter {
    ($(#[$meta:meta])* fn $test:ident($interp:ident) for [$($entry:ident),+ $(,)?] $body:block) => {
        $(#[$meta])*
        mod $test {
            #[allow(unused_imports)]
            use super::*;
            /// The interpreters this module stamps a test for.
            #[allow(dead_code)]
            pub const STAMPED: &[&str] = &[$(stringify!($entry)),+];
            $(
                #[test]
                fn $entry() {
                    let $interp: &'static $crate::interpreters::Interpreter =
                        $crate::interpreters::get(stringify!($entry));
                    $body
                }
            )+
        }
    };
    ($(#[$meta:meta])* fn $test:ident($interp:ident) $body:block) => {
        $crate::per_interpreter! {
            $(#[$meta])*
            fn $test($interp) for [
                pyenv_2_7, pyenv_3_6, pyenv_3_7, pyenv_3_8, pyenv_3_9, pyenv_3_10, pyenv_3_11,
                pyenv_3_12, pyenv_3_13, debian_3_11, sid_3_13, sid_3_13_debug, sid_3_14,
                sid_3_14_pie, sid_3_14_debug, sid_3_15, sid_3_15_debug
            ] $body
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::per_interpreter! {
        fn stamped(interp) {
            assert!(interp.require().path().is_file());
        }
    }

    #[test]
    fn the_macro_stamps_every_entry_once() {
        let registry: Vec<&str> = ALL.iter().map(|i| i.name).collect();
        assert_eq!(stamped::STAMPED, registry.as_slice());
    }

    #[test]
    fn names_are_unique_and_say_where_the_interpreter_comes_from() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| b.name != a.name), "{a:?}");
            let prefix = match a.source {
                Source::Pyenv(_) => "pyenv_",
                Source::System(_) => "debian_",
                Source::Sid(_) => "sid_",
            };
            let version = format!("{}{}_{}", prefix, a.version.0, a.version.1);
            assert!(a.name.starts_with(&version), "{a:?}");
            assert_eq!(a.name.ends_with("_debug"), a.debug, "{a:?}");
        }
    }

    #[test]
    fn every_registered_interpreter_is_installed_and_reports_its_version() {
        for interp in ALL {
            let out = interp
                .command()
                .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", interp.name));
            assert!(out.status.success(), "{}: {out:?}", interp.name);
            let said = String::from_utf8_lossy(&out.stdout);
            let want = format!("{}.{}", interp.version.0, interp.version.1);
            assert_eq!(said.trim(), want, "{}", interp.name);
            if let Some(full) = interp.full_version() {
                assert!(
                    interp
                        .path()
                        .starts_with(pyenv_root().join("versions").join(full)),
                    "{}",
                    interp.name
                );
            }
        }
    }

    #[test]
    fn the_provisioning_script_installs_every_registered_interpreter() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/provision.sh");
        let text = std::fs::read_to_string(&script)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", script.display()));
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .collect();
        for interp in ALL {
            let wanted = match interp.source {
                Source::Pyenv(full) => full.to_string(),
                Source::System(path) => path.to_string(),
                Source::Sid(_) => {
                    let (major, minor) = interp.version;
                    let dbg = if interp.debug { "-dbg" } else { "" };
                    format!("python{major}.{minor}{dbg}")
                }
            };
            assert!(
                words.contains(&wanted.as_str()),
                "{} ({wanted}) is not provisioned by .ci/provision.sh",
                interp.name
            );
        }
    }

    #[test]
    fn debug_builds_say_so() {
        for interp in ALL {
            let out = interp
                .command()
                .args(["-c", "import sys; print(hasattr(sys, 'gettotalrefcount'))"])
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", interp.name));
            let said = String::from_utf8_lossy(&out.stdout);
            let want = if interp.debug { "True" } else { "False" };
            assert_eq!(said.trim(), want, "{}", interp.name);
        }
    }
}

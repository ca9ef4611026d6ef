//! The committed tables are exactly what `python-abi/gen/abigen.py` produces from the headers.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_tables_match_the_headers() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("gen/abigen.py");
    let output = Command::new("python3").arg(&script).arg("--check").output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!("could not run python3 {}: {e}", script.display()),
    };
    assert!(
        output.status.success(),
        "{} --check failed ({}):\n{}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

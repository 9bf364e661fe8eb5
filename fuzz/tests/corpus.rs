//! Every file of `fuzz/corpus/<target>/` through its target, as a plain test: the inputs the
//! fuzzer kept (and any crash it once found, once fixed) stay checked on every run.

use std::path::Path;

#[test]
fn every_corpus_entry_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in lockbox_fuzz::TARGETS {
        let dir = root.join(name);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            count += 1;
        }
        assert!(count > 0, "{name}: no corpus in {}", dir.display());
    }
}

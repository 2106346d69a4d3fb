//! The inputs the fuzzers (fuzz/, `cargo +nightly fuzz run config|listing`) start from, and
//! every input that once broke a parser, run through the same checks on each `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

use snapnest::source::listing::{folder_of, parse_find_output, whole_records_len};
use snapnest::source::Listing;

fn inputs(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        if let Ok(rd) = fs::read_dir(root.join(dir).join(kind)) {
            out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out
}

#[test]
fn config_inputs_parse_or_fail_cleanly() {
    let files = inputs("config");
    assert!(!files.is_empty(), "the seed corpus is in the repository");
    for f in files {
        let data = fs::read(&f).unwrap();
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = snapnest::config::Config::parse(text, Path::new("fuzz.toml"));
        }
    }
}

#[test]
fn listing_inputs_never_store_a_path_outside_the_snapshot() {
    let files = inputs("listing");
    assert!(!files.is_empty(), "the seed corpus is in the repository");
    let roots = vec!["/home/alice".to_string(), "/etc".to_string()];
    for f in files {
        let data = fs::read(&f).unwrap();
        let whole = whole_records_len(&data);
        let mut listing = Listing::default();
        if parse_find_output(&data[..whole], folder_of(&roots), &mut listing).is_ok() {
            for e in listing.entries.finish().unwrap().iter().unwrap() {
                let e = e.unwrap();
                let bad = e.path.starts_with(b"/")
                    || e.path
                        .split(|&b| b == b'/')
                        .any(|c| c == b".." || c == b"." || c.is_empty());
                assert!(
                    !bad,
                    "{}: unsafe path {:?}",
                    f.display(),
                    String::from_utf8_lossy(&e.path)
                );
            }
        }
    }
}

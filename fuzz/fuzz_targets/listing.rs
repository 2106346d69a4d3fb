//! Any bytes as a remote `find -printf` listing (a hostile or broken host sends them): an
//! error or entries whose paths stay inside the configured folder, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapnest::source::listing::{folder_of, parse_find_output, whole_records_len};
use snapnest::source::Listing;

fuzz_target!(|data: &[u8]| {
    let roots = vec!["/home/alice".to_string(), "/etc".to_string()];
    let whole = whole_records_len(data);
    assert!(whole <= data.len());
    let mut listing = Listing::default();
    if parse_find_output(&data[..whole], folder_of(&roots), &mut listing).is_ok() {
        for e in listing.entries.finish().unwrap().iter().unwrap() {
            let e = e.unwrap();
            // Stored paths are relative and never climb out of the snapshot.
            assert!(!e.path.starts_with(b"/"), "absolute path stored: {:?}", e.path);
            assert!(
                !e.path.split(|&b| b == b'/').any(|c| c == b".." || c == b"." || c.is_empty()),
                "unsafe path stored: {:?}",
                String::from_utf8_lossy(&e.path)
            );
        }
    }
});

//! The Go-style duration parser of link requests
//! (`issuer::duration::parse_duration`: `30m`, `1h30m`, `1.5h`), and the
//! RFC 3339 instant parser beside it. Property: an accepted duration is
//! at least one second (zero is refused) and adding a `0s` term does not
//! change it.
#![no_main]

use gatehouse::issuer::duration::{parse_duration, parse_rfc3339};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_rfc3339(text);
    let Ok(seconds) = parse_duration(text) else {
        return;
    };
    assert!(seconds > 0, "{text:?} parsed as zero");
    if text.len() < 60 {
        let longer = format!("{text}0s");
        if let Ok(again) = parse_duration(&longer) {
            assert_eq!(again, seconds, "{longer:?} differs from {text:?}");
        }
    }
});

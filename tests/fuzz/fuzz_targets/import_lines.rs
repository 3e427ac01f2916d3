//! CSV / JSON Lines import: any bytes give records or line errors, never a panic, and every
//! record that comes out is valid or is rejected by validation with a named field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ledger::import::Lines;

fuzz_target!(|data: &[u8]| {
    let mut lines = Lines::new(data, None);
    let mut guard = 0;
    while let Some(item) = lines.next_record() {
        if let Ok((_, refund)) = item {
            if let Err(e) = refund.validate() {
                assert!(!e.field.is_empty());
            }
        }
        guard += 1;
        assert!(guard <= data.len() + 1, "more items than lines");
    }
});

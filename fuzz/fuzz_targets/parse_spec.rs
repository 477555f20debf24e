//! Fuzz the spec parser: any bytes must give a spec or diagnostics, never a panic; specs that parse must
//! validate without panicking and round-trip through `to_toml_string`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staves_core::ImageSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (_diagnostics, _spec) = ImageSpec::check_str(text, None);
    if let Ok(spec) = ImageSpec::from_toml_str(text) {
        let diagnostics = spec.validate();
        for d in &diagnostics {
            let _ = d.render(Some(text));
        }
        let written = spec.to_toml_string();
        let again = ImageSpec::from_toml_str(&written).expect("written spec parses");
        assert_eq!(spec, again, "round trip changed the spec:\n{written}");
    }
});

//! Fuzz the spec parser: any bytes must give a spec or diagnostics, never a panic; specs that parse must
//! validate without panicking and round-trip through `to_toml_string`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staves_core::{ImageSpec, SpecError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match ImageSpec::parse(text, None) {
        Ok(spec) => spec,
        Err(err) => {
            let _ = err.render();
            // A spec that parsed but breaks rules still round-trips.
            match err {
                SpecError::Invalid {
                    spec: Some(spec), ..
                } => *spec,
                _ => return,
            }
        }
    };
    let diagnostics = spec.validate();
    let _ = spec.render_diagnostics(&diagnostics);
    let written = spec.to_toml_string();
    let again = match ImageSpec::parse(&written, None) {
        Ok(again) => again,
        Err(SpecError::Invalid {
            spec: Some(again), ..
        }) => *again,
        Err(err) => panic!("written spec does not parse: {err}\n{written}"),
    };
    assert_eq!(spec, again, "round trip changed the spec:\n{written}");
});

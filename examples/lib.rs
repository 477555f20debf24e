//! Example programs that embed `staves-core`; see the `examples` targets.

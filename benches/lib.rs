//! Benchmarks for Staves live in `benches/`; this library is empty.

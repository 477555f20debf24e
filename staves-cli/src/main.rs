//! The `staves` command.
fn main() {}

//! Python bindings for Staves.

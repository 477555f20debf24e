//! The defaults of a build that the `staves` CLI and the Python module both apply, defined once.
//!
//! The images and the cache volume have their own constants ([`crate::DEFAULT_BUILDER_IMAGE`],
//! [`crate::DEFAULT_PORTAGE_IMAGE`], [`crate::DEFAULT_BUILD_CACHE`]); these are the switches around them. A
//! front end that leaves a setting unset uses the value here, so `staves build` and `staves.build()` agree.

use crate::platform::Compression;
use std::time::Duration;

/// Mount `~/.ssh` read-only into the builder (when it exists), for private git repositories.
pub const SSH: bool = true;

/// Mount `~/.netrc` read-only into the builder (when it exists), for repositories behind HTTP authentication.
pub const NETRC: bool = true;

/// `LANG` inside the builder container.
pub const BUILDER_LOCALE: &str = "C.UTF-8";

/// Layer compression of the written image.
pub const COMPRESSION: Compression = Compression::Gzip;

/// A registry request that sends and receives no byte for this long fails (`--registry-idle-timeout`).
pub const REGISTRY_IDLE_TIMEOUT: Duration = crate::registry::DEFAULT_IDLE_TIMEOUT;

/// The most one registry request may take (`--registry-timeout`); a blob upload gets 4 s more per MiB.
pub const REGISTRY_TIMEOUT: Duration = crate::registry::DEFAULT_TIMEOUT;

/// A binhost download (in the builder) that receives no byte for this long fails (`--binhost-idle-timeout`).
pub const BINHOST_IDLE_TIMEOUT: Duration = crate::binhost::DEFAULT_FETCH_IDLE_TIMEOUT;

/// The most one binhost download may take (`--binhost-timeout`).
pub const BINHOST_TIMEOUT: Duration = crate::binhost::DEFAULT_FETCH_TIMEOUT;

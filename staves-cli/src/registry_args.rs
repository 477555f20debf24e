//! Flags for the `docker://` outputs, shared by `build` and `assemble`.

use staves_core::{RegistryOptions, WrittenOutput};
use std::path::PathBuf;
use std::time::Duration;

/// TLS, credential and timeout settings for `--output docker://HOST[:PORT]/REPO[:TAG]`, named as skopeo names the
/// ones it has.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Verify the registry's TLS certificate (`--tls-verify=false` skips it and allows plain HTTP).
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    tls_verify: bool,
    /// A registry (HOST or HOST:PORT) that may be reached over plain HTTP. Repeatable. localhost and
    /// 127.0.0.0/8 always may.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Trust the *.crt CA certificates in DIR instead of /etc/docker/certs.d/HOST:PORT.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Read registry credentials from FILE first (default: REGISTRY_AUTH_FILE), then docker's config.json.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Fail a registry request that sends and receives no byte for SECONDS.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = staves_core::defaults::REGISTRY_IDLE_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    registry_idle_timeout: u64,
    /// Fail a registry request that takes longer than SECONDS in all; a blob upload gets 4 s more per MiB of
    /// the blob.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = staves_core::defaults::REGISTRY_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    registry_timeout: u64,
}

impl RegistryArgs {
    /// The library's settings.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions::default()
            .tls_verify(self.tls_verify)
            .insecure_registries(self.insecure_registries.clone())
            .cert_dir(self.cert_dir.clone())
            .auth_file(self.authfile.clone())
            .idle_timeout(Duration::from_secs(self.registry_idle_timeout))
            .timeout(Duration::from_secs(self.registry_timeout))
    }
}

/// One line per push: where, the digest, and what was uploaded versus already there.
pub fn describe_push(output: &WrittenOutput) -> Option<String> {
    let push = output.pushed.as_ref()?;
    let mut line = format!(
        "pushed {} ({}): uploaded {} bytes in {} blobs, skipped {} bytes already in the registry",
        push.destination, push.digest, push.uploaded_bytes, push.uploaded_blobs, push.skipped_bytes
    );
    if push.mounted_blobs > 0 {
        line.push_str(&format!(
            ", mounted {} bytes from another repository",
            push.mounted_bytes
        ));
    }
    if !push.referrers.is_empty() {
        line.push_str(&format!("; {} referrer(s) (SBOM)", push.referrers.len()));
    }
    if push.plain_http {
        line.push_str("; over plain HTTP");
    }
    Some(line)
}

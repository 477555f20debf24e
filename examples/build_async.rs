//! Embed the library in an async tool: build an image with `build_image_async` on a Tokio runtime, printing the
//! events as JSON lines. Ctrl-C drops the build's future, which cancels the build and removes its containers.
//!
//! ```sh
//! cargo run -p staves-examples --example build_async -- examples/hello/staves.toml \
//!     staves-test/stage3:latest staves-test/portage:latest
//! ```

use staves_core::{
    BuildOptions, BuildRequest, DockerBuilder, ImageSpec, Output, build_image_async,
};
use std::process::ExitCode;
use std::sync::Arc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, builder_image, portage_image] = args.as_slice() else {
        eprintln!("usage: build_async SPEC BUILDER_IMAGE PORTAGE_IMAGE");
        return ExitCode::from(2);
    };
    match build(spec, builder_image, portage_image).await {
        Ok(Some(digest)) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("interrupted: the build was dropped and its containers are being removed");
            ExitCode::from(4)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn build(
    spec: &str,
    builder_image: &str,
    portage_image: &str,
) -> staves_core::Result<Option<String>> {
    let spec = ImageSpec::load(std::path::Path::new(&spec))?;
    let builder = DockerBuilder::new(builder_image)?.portage_image(portage_image);
    let request = BuildRequest::new(vec![Output::Docker]);
    let options = BuildOptions::default().with_events(Arc::new(|event| {
        if let Ok(line) = serde_json::to_string(event) {
            eprintln!("{line}");
        }
    }));
    tokio::select! {
        outcome = build_image_async(&spec, &builder, &request, &options) => {
            Ok(Some(outcome?.image.digest))
        }
        // Dropping the future cancels the build; the cleanup runs in the background and takes a second or two.
        _ = tokio::signal::ctrl_c() => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            Ok(None)
        }
    }
}

//! Embed the library in a test harness: run the whole pipeline with the mock backend (no Docker) on a rootfs
//! directory, and write an OCI archive.
//!
//! ```sh
//! cargo run -p staves-examples --example mock_image -- examples/hello/staves.toml ROOTFS_DIR image.tar
//! ```

use staves_core::{BuildOptions, BuildRequest, ImageSpec, MockBuilder, Output, build_image};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [spec, rootfs, archive] = args.as_slice() else {
        eprintln!("usage: mock_image SPEC ROOTFS_DIR ARCHIVE");
        return ExitCode::from(2);
    };
    let result = ImageSpec::load(spec)
        .map_err(staves_core::Error::from)
        .and_then(|spec| {
            let mock = MockBuilder::from_dir(rootfs);
            let request = BuildRequest::new(vec![Output::OciArchive(archive.clone())]);
            build_image(&spec, &mock, &request, &BuildOptions::default())
        });
    match result {
        Ok(outcome) => {
            println!("{}", outcome.image.digest);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

//! Builds and `staves lock` with a lock, on the mock backend: pins in the plan, the resolution check, rewriting
//! the lock, and the errors (no engine).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::lock::LockChangeKind;
use staves_core::plan_for;
use staves_core::{
    BuildOptions, BuildRequest, Error, ImageSpec, LockError, LockMode, LockOptions, LockRequest,
    Lockfile, MockBuilder, MockCall, MockEntry, Output, PlanOptions, StepKind, build_image,
    lock_spec,
};
use std::path::{Path, PathBuf};

const SPEC: &str = "name = 'staves-test/locked'\npackages = ['app-misc/versioned']\n";

/// `emerge --pretend` output as the resolve step prints it, for `versioned` at `version` (plus `hello` when asked).
fn resolution(version: &str, hello: bool) -> String {
    let mut rootfs = format!(
        "[ebuild  N     ] app-misc/versioned-{version}::gentoo to /tmp/rootfs/ 0 KiB\n\
         [ebuild  N     ] virtual/libc-1::gentoo to /tmp/rootfs/ 0 KiB\n"
    );
    if hello {
        rootfs.push_str(
            "[ebuild  N     ] app-misc/hello-1::gentoo to /tmp/rootfs/ USE=\"nls\" 0 KiB\n\
             [ebuild  N     ] dev-util/buildtool-1::gentoo  0 KiB\n",
        );
    }
    format!(
        "staves-lock\ttimestamp\tMon, 30 Nov 2026 00:00:00 +0000\n\
         staves-lock\tbegin\tbuilder\n\
         staves-lock\tend\tbuilder\t0\n\
         staves-lock\tbegin\trootfs\n{rootfs}staves-lock\tend\trootfs\t0\n"
    )
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("staves.toml"), spec).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spec(&self) -> ImageSpec {
        ImageSpec::load(self.path("staves.toml")).unwrap()
    }

    fn set_spec(&self, spec: &str) {
        std::fs::write(self.path("staves.toml"), spec).unwrap();
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.path("staves.lock")).unwrap()
    }

    /// `staves lock` with a mock whose resolution has `versioned` at `version`.
    fn lock(&self, version: &str) -> staves_core::LockOutcome {
        let mock = resolver(&resolution(version, false));
        lock_spec(
            &self.spec(),
            &mock,
            &LockRequest::new(),
            &BuildOptions::default(),
        )
        .unwrap()
    }

    fn build(
        &self,
        mock: &MockBuilder,
        mode: LockMode,
    ) -> staves_core::Result<staves_core::BuildOutcome> {
        let request = BuildRequest::new(vec![Output::Rootfs(self.path("rootfs.tar"))])
            .jobs(Some(1))
            .lock(LockOptions::new(mode));
        build_image(&self.spec(), mock, &request, &BuildOptions::default())
    }
}

fn resolver(resolve_output: &str) -> MockBuilder {
    MockBuilder::from_entries(vec![MockEntry::Dir {
        path: "usr".into(),
        mode: 0o755,
    }])
    .step_output(StepKind::Resolve, resolve_output)
}

fn exported(mock: &MockBuilder) -> bool {
    mock.calls().iter().any(|c| matches!(c, MockCall::Export))
}

#[test]
fn lock_writes_a_stable_file_next_to_the_spec_and_exports_nothing() {
    let dir = Dir::new(SPEC);
    let mock = resolver(&resolution("1", false));
    let outcome = lock_spec(
        &dir.spec(),
        &mock,
        &LockRequest::new(),
        &BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(outcome.path, dir.path("staves.lock"));
    assert!(!exported(&mock), "a resolve plan exports no rootfs");
    let MockCall::Build { plan } = &mock.calls()[0] else {
        panic!()
    };
    let kinds: Vec<&StepKind> = plan.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(kinds, [&StepKind::WriteFiles, &StepKind::Resolve]);
    // Every entry is new the first time.
    assert!(
        outcome
            .changes
            .iter()
            .all(|c| c.kind == LockChangeKind::Added)
    );
    let first = dir.lock_text();
    assert!(first.contains("atom = \"=app-misc/versioned-1::gentoo\""));
    assert!(first.contains("portage-timestamp = \"Mon, 30 Nov 2026 00:00:00 +0000\""));
    // Again: the same bytes, and nothing changed.
    let again = dir.lock("1");
    assert_eq!(dir.lock_text(), first);
    assert!(again.changes.is_empty());
}

#[test]
fn a_locked_build_pins_versions_checks_the_resolution_and_keeps_the_lock() {
    let dir = Dir::new(SPEC);
    dir.lock("1");
    let before = dir.lock_text();

    // The plan holds the pins and resolves before building.
    let (plan, pins) = plan_for(
        &dir.spec(),
        &PlanOptions::with_jobs(1),
        &LockOptions::default(),
    )
    .unwrap();
    assert_eq!(pins.unwrap().pins.packages.len(), 2);
    let mask = &plan.files_by_path()["/etc/portage/package.mask/staves-lock"];
    assert!(
        mask.contains("<app-misc/versioned-1:0\n>app-misc/versioned-1:0\n"),
        "{mask}"
    );
    let kinds: Vec<&StepKind> = plan.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds[..3],
        [
            &StepKind::WriteFiles,
            &StepKind::Resolve,
            &StepKind::CheckBinaries
        ]
    );

    let mock = resolver(&resolution("1", false));
    let outcome = dir.build(&mock, LockMode::Locked).unwrap();
    assert!(outcome.lock.locked);
    assert!(!outcome.lock.written);
    assert!(outcome.lock.changes.is_empty());
    assert_eq!(dir.lock_text(), before);
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["lock"]["locked"], true);
    // The hash an SBOM names: the lock's canonical bytes.
    let lock = Lockfile::load(dir.path("staves.lock")).unwrap();
    assert_eq!(outcome.lock.hash.as_deref(), Some(lock.hash().as_str()));
    assert_eq!(lock.to_toml_string(), before);
}

#[test]
fn without_a_lock_a_build_is_unlocked_and_writes_none() {
    let dir = Dir::new(SPEC);
    let mock = resolver("");
    let outcome = dir.build(&mock, LockMode::Update).unwrap();
    assert!(!outcome.lock.locked);
    assert!(!dir.path("staves.lock").exists());
    let MockCall::Build { plan } = &mock.calls()[0] else {
        panic!()
    };
    assert!(!plan.steps.iter().any(|s| s.kind == StepKind::Resolve));

    // --locked without a lock: refused before the builder is asked for anything.
    let mock = mock_untouched();
    let err = dir.build(&mock, LockMode::Locked).unwrap_err();
    assert!(
        matches!(err, Error::Lock(LockError::NoLock { .. })),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    assert!(mock.calls().is_empty());
}

fn mock_untouched() -> MockBuilder {
    resolver("")
}

#[test]
fn missing_locked_versions_stop_the_build_before_anything_is_written() {
    let dir = Dir::new(SPEC);
    dir.lock("1");
    let before = dir.lock_text();
    let mock = resolver("staves-lock\tmissing\t=app-misc/versioned-1::gentoo\n");
    let err = dir.build(&mock, LockMode::Update).unwrap_err();
    let Error::Lock(LockError::MissingVersions { missing, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(missing, &["=app-misc/versioned-1::gentoo"]);
    let message = err.to_string();
    assert!(
        message.contains("staves lock") && message.contains("--portage"),
        "{message}"
    );
    assert_eq!(err.exit_code(), 4);
    assert!(!exported(&mock), "nothing is written");
    assert!(!dir.path("rootfs.tar").exists());
    // The build stopped at the resolve step: no build step ran.
    assert!(
        !mock
            .calls()
            .iter()
            .any(|c| matches!(c, MockCall::Step { index, .. } if *index > 2))
    );
    assert_eq!(dir.lock_text(), before);
}

#[test]
fn a_changed_spec_keeps_the_pins_extends_the_lock_and_says_what_changed() {
    let dir = Dir::new(SPEC);
    dir.lock("1");
    dir.set_spec(
        "name = 'staves-test/locked'\npackages = ['app-misc/versioned', 'app-misc/hello']\n",
    );

    // --locked refuses the stale lock before any step runs.
    let mock_locked = resolver(&resolution("1", true));
    let err = dir.build(&mock_locked, LockMode::Locked).unwrap_err();
    assert!(matches!(err, Error::Lock(LockError::Stale { .. })), "{err}");
    assert!(mock_locked.calls().is_empty());

    // Without --locked: the pin on versioned-1 stays, hello is resolved and added, the lock is rewritten.
    let mock = resolver(&resolution("1", true));
    let outcome = dir.build(&mock, LockMode::Update).unwrap();
    let MockCall::Build { plan } = &mock.calls()[0] else {
        panic!()
    };
    assert!(
        plan.files_by_path()["/etc/portage/package.mask/staves-lock"]
            .contains(">app-misc/versioned-1:0")
    );
    assert!(outcome.lock.locked && outcome.lock.written);
    let added: Vec<String> = outcome
        .lock
        .changes
        .iter()
        .filter(|c| c.kind == LockChangeKind::Added)
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(added, ["app-misc/hello", "dev-util/buildtool"]);
    let lock = Lockfile::load(dir.path("staves.lock")).unwrap();
    let atoms: Vec<String> = lock.rootfs.iter().map(|p| p.atom()).collect();
    assert!(atoms.contains(&"=app-misc/versioned-1::gentoo".to_owned()));
    assert!(atoms.contains(&"=app-misc/hello-1::gentoo".to_owned()));

    // Now the lock matches: --locked builds.
    let mock = resolver(&resolution("1", true));
    assert!(dir.build(&mock, LockMode::Locked).is_ok());
}

#[test]
fn locked_mode_refuses_a_resolution_that_differs_from_the_lock() {
    let dir = Dir::new(SPEC);
    dir.lock("1");
    // Same spec, but Portage now resolves another version (e.g. the lock was edited to a version the pins cannot
    // hold): --locked refuses and names the change; nothing is exported.
    let mock = resolver(&resolution("2", false));
    let err = dir.build(&mock, LockMode::Locked).unwrap_err();
    let Error::Lock(LockError::Stale { changes, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(changes.len(), 1);
    assert!(err.to_string().contains("app-misc/versioned-1"), "{err}");
    assert!(!exported(&mock));
}

#[test]
fn a_hand_edited_lock_is_refused_with_its_position() {
    let dir = Dir::new(
        "name = 'staves-test/locked'\npackages = ['app-misc/hello']\n['app-misc/hello']\nuse = ['-nls']\n",
    );
    let mock_lock = resolver(
        "staves-lock\tbegin\tbuilder\nstaves-lock\tend\tbuilder\t0\nstaves-lock\tbegin\trootfs\n\
         [ebuild  N     ] app-misc/hello-1::gentoo to /tmp/rootfs/ USE=\"-nls\" 0 KiB\n\
         [ebuild  N     ] virtual/libc-1::gentoo to /tmp/rootfs/ 0 KiB\n\
         staves-lock\tend\trootfs\t0\n",
    );
    lock_spec(
        &dir.spec(),
        &mock_lock,
        &LockRequest::new(),
        &BuildOptions::default(),
    )
    .unwrap();
    let edited = dir
        .lock_text()
        .replace("use = [\"-nls\"]", "use = [\"nls\"]");
    std::fs::write(dir.path("staves.lock"), &edited).unwrap();
    let mock = mock_untouched();
    let err = dir.build(&mock, LockMode::Update).unwrap_err();
    let Error::Lock(lock_error) = &err else {
        panic!("{err}")
    };
    let d = &lock_error.diagnostics()[0];
    assert_eq!(d.path.as_deref(), Some(dir.path("staves.lock").as_path()));
    assert!(d.line.is_some());
    assert!(
        lock_error
            .render()
            .contains("atom = \"=app-misc/hello-1::gentoo\"")
    );
    assert!(mock.calls().is_empty());
}

#[test]
fn lock_output_can_go_elsewhere_and_specs_without_a_file_need_a_path() {
    let spec = ImageSpec::parse(SPEC, None).unwrap();
    let mock = resolver(&resolution("1", false));
    let err = lock_spec(&spec, &mock, &LockRequest::new(), &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Lock(LockError::NoLock { .. })));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("other.lock");
    let outcome = lock_spec(
        &spec,
        &mock,
        &LockRequest::new().output(Some(out.clone())),
        &BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(outcome.path, out);
    assert!(Path::new(&out).exists());
}

"""plan(): the Portage files and steps for the seed's bash example, and refusals for bad specs."""

import shlex

import pytest

import staves
from conftest import EXAMPLES, cli_json, run_cli

BASH = EXAMPLES / "bash" / "staves.toml"


@pytest.fixture(scope="module")
def bash_plan():
    return staves.plan(staves.ImageSpec.from_file(BASH), jobs=3)


def test_files_of_the_bash_example(bash_plan):
    files = bash_plan.files
    assert sorted(files) == [
        "/etc/portage/bashrc",
        "/etc/portage/make.conf",
        "/etc/portage/package.mask/staves-binpkg-env",
        "/etc/portage/package.use/staves",
        "/var/tmp/staves/binpkg-env.py",
    ]
    assert files["/etc/portage/package.use/staves"] == "app-shells/bash -nls\n"
    make_conf = files["/etc/portage/make.conf"].splitlines()
    assert make_conf[0].startswith("# BEGIN staves")
    assert make_conf[-1] == "# END staves"
    assert 'MAKEOPTS="-j3 -l3"' in make_conf
    assert any(line.startswith("FEATURES=") and "buildpkg" in line for line in make_conf)


def test_steps_of_the_bash_example(bash_plan):
    steps = bash_plan.steps
    assert [s.kind for s in steps] == [
        "write-files",
        "check-binaries",
        "build-deps",
        "locale-generate",
        "direct-merge",
        "rootfs",
        "locale-install",
        "verify-binaries",
        "libraries",
        "package-list",
        "cleanup",
    ]
    build_deps, direct, rootfs = steps[2], steps[4], steps[5]
    # The two emerge calls of the original Staves, with the jobs asked for.
    assert build_deps.argv == [
        "emerge", "--verbose", "--onlydeps", "--usepkg", "--with-bdeps=y", "--emptytree",
        "--jobs", "3", "app-shells/bash",
    ]
    # The rootfs emerge, behind a wrapper that adds --noreplace --deep after a direct merge.
    assert rootfs.argv[:2] == ["/bin/sh", "-c"] and rootfs.argv[3] == "sh"
    assert "--noreplace --deep" in rootfs.argv[2]
    assert rootfs.argv[4:] == [
        "emerge", "--verbose", "--root=/tmp/rootfs", "--root-deps=rdeps", "--oneshot", "--usepkg",
        "--jobs", "3", "app-shells/bash", "virtual/libc",
    ]
    assert "staves_python merge /tmp/rootfs /var/tmp/staves/rootfs-pretend.txt" in direct.argv[2]
    assert build_deps.env == {"NOCOLOR": "true"}
    # Merges into the rootfs cannot disturb builds in the builder, so they do not wait for them.
    assert rootfs.env == {"NOCOLOR": "true", "FEATURES": "-merge-wait"}
    assert rootfs.label == "Install runtime dependencies into the rootfs"
    assert steps[3].label == "Generate locale C UTF-8"
    assert steps[6].label == "Copy locale C UTF-8 into the rootfs"
    assert steps[8].label == "Copy libgcc_s.so.1 into the rootfs"
    assert steps[0].argv[:2] == ["/bin/sh", "-c"]
    assert bash_plan.rootfs_atoms == ["app-shells/bash", "virtual/libc"]


def test_load_average_is_passed_to_emerge_and_make():
    plan = staves.plan(staves.ImageSpec.from_file(BASH), jobs=3, load_average=2.5)
    assert plan.steps[2].argv[6:10] == ["--jobs", "3", "--load-average", "2.5"]
    assert plan.steps[5].argv[10:14] == ["--jobs", "3", "--load-average", "2.5"]
    assert 'MAKEOPTS="-j3 -l2.5"' in plan.files["/etc/portage/make.conf"].splitlines()


@pytest.mark.parametrize("load", [0, -1.0, float("nan"), float("inf")])
def test_unusable_load_average_is_a_value_error(load):
    with pytest.raises(ValueError, match="above 0"):
        staves.plan(staves.ImageSpec.from_file(BASH), jobs=3, load_average=load)


def test_script_runs_every_step(bash_plan):
    script = bash_plan.script
    assert script.startswith("#!/bin/sh")
    # The files are staged with their exact content, and every step appears, in order.
    assert "app-shells/bash -nls\n" in script
    positions = [script.index(f"'>>> staves: {s.label}'") for s in bash_plan.steps]
    assert positions == sorted(positions)
    emerge = " ".join(shlex.quote(a) for a in bash_plan.steps[5].argv[3:])
    assert emerge in script


def test_portage_merge_leaves_every_package_to_emerge():
    plan = staves.plan(staves.ImageSpec.from_file(BASH), jobs=3, portage_merge=True)
    kinds = [s.kind for s in plan.steps]
    assert "direct-merge" not in kinds
    rootfs = plan.steps[kinds.index("rootfs")]
    assert rootfs.argv == [
        "emerge", "--verbose", "--root=/tmp/rootfs", "--root-deps=rdeps", "--oneshot", "--usepkg",
        "--jobs", "3", "app-shells/bash", "virtual/libc",
    ]
    config = EXAMPLES / "bash" / "staves.toml"
    assert plan.to_dict() == cli_json("plan", "--config", config, "--jobs", "3", "--portage-merge")


@pytest.mark.parametrize("example", ["bash", "hello"])
def test_plan_equals_the_cli(example):
    config = EXAMPLES / example / "staves.toml"
    plan = staves.plan(staves.ImageSpec.from_file(config), jobs=3)
    assert plan.to_dict() == cli_json("plan", "--config", config, "--jobs", "3")
    assert plan.script == run_cli("plan", "--config", config, "--jobs", "3", "--format", "script").stdout
    assert plan.text == run_cli("plan", "--config", config, "--jobs", "3", "--format", "text").stdout


def test_to_dict_matches_the_objects(bash_plan):
    as_dict = bash_plan.to_dict()
    assert [s["label"] for s in as_dict["steps"]] == [s.label for s in bash_plan.steps]
    assert {"/" + f["path"]: f["content"] for f in as_dict["files"]} == bash_plan.files


def test_jobs_default_to_the_cpus():
    import os

    plan = staves.plan(staves.ImageSpec.from_file(BASH))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert f'MAKEOPTS="-j{cpus} -l{cpus}"' in plan.files["/etc/portage/make.conf"]


def test_repositories_add_sync_steps_and_repos_conf():
    spec = staves.ImageSpec(
        name="x/y",
        packages=["app-misc/hello"],
        repositories=[{"name": "my-repo", "type": "git", "uri": "https://example.com/overlay.git"}],
    )
    plan = staves.plan(spec, jobs=1)
    sync = [s for s in plan.steps if s.kind == "sync"]
    assert [s.argv for s in sync] == [["emaint", "sync", "--repo", "my-repo"]]
    assert any("repos.conf" in path and "my-repo" in content for path, content in plan.files.items())


def test_invalid_spec_is_refused_with_a_spec_error():
    spec = staves.ImageSpec.from_toml("name = 'x/y'\npackages = ['bash']\n", path="bad.toml")
    with pytest.raises(staves.SpecError) as info:
        staves.plan(spec)
    err = info.value
    assert err.diagnostics and all(d.is_error for d in err.diagnostics)
    assert (err.line, err.column, err.path) == (2, 13, "bad.toml")
    assert err.exit_code == 1


def test_no_packages_is_refused():
    with pytest.raises(staves.SpecError, match="no packages"):
        staves.plan(staves.ImageSpec(name="x/y"))

"""Registry outputs (``docker://``), binhosts and networks from Python: the glue and its errors.

The pushes, the remote engine and the binhost builds themselves run against real servers in the CLI's end-to-end
tests (staves-cli/tests/e2e_registry.rs, e2e_remote_engine.rs, e2e_binhost.rs); these check that Python reaches
the same code with the same arguments.
"""

import socket

import pytest

import staves
from conftest import HELLO


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "app").write_bytes(b"bytes to push\n")
    return root


@pytest.fixture
def hello_spec():
    return staves.ImageSpec.from_file(HELLO)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_registry_output_that_cannot_be_reached_writes_nothing(tmp_path, rootfs, hello_spec):
    port = closed_port()
    layout = tmp_path / "layout"
    with pytest.raises(staves.StavesError, match=rf"cannot reach the registry 127\.0\.0\.1:{port}") as info:
        staves.assemble(rootfs, hello_spec, [f"oci:{layout}", f"docker://127.0.0.1:{port}/team/app:1"])
    assert info.value.exit_code == 5
    assert not layout.exists(), "a local output was committed although the push failed"
    # The same through build() with the mock backend, and with registry settings.
    with pytest.raises(staves.StavesError, match="cannot reach the registry"):
        staves.build(
            hello_spec,
            staves.MockBuilder(rootfs),
            [f"docker://127.0.0.1:{port}/team/app"],
            registry={"tls_verify": False, "insecure_registries": ["127.0.0.1"]},
        )


def test_registry_arguments_are_checked(rootfs, hello_spec):
    with pytest.raises(ValueError, match="not a digest"):
        staves.assemble(rootfs, hello_spec, ["docker://r.example/app@sha256:00"])
    with pytest.raises(ValueError, match="must be lowercase"):
        staves.assemble(rootfs, hello_spec, ["docker://r.example/App:1"])
    with pytest.raises(TypeError, match="unknown key"):
        staves.assemble(rootfs, hello_spec, ["docker://r.example/app"], registry={"verify": False})


def test_binhost_adds_the_fetch_step(tmp_path, rootfs, hello_spec):
    builder = staves.MockBuilder(rootfs)
    report = staves.build(hello_spec, builder, [f"oci:{tmp_path / 'o'}"], binhost="http://binhost:8080", jobs=2)
    plain = [s.argv for s in staves.plan(hello_spec, jobs=2).steps]
    assert len(builder.steps_run) == len(plain) + 1
    changed = [argv[-1] for argv in builder.steps_run if argv not in plain]
    # The write-files step also writes binrepos.conf, and the fetch step is new.
    assert len(changed) == 2 and "binrepos.conf/staves.conf" in changed[0], changed
    assert "--fetchonly --getbinpkg" in changed[1], changed
    assert "fetch-binaries" in [s.kind for s in report.steps]
    assert report.fetched_from_binhost == []
    assert report.installed_from_binhost == []
    assert report.binhost_use is None
    with pytest.raises(ValueError, match=r"^build\(\): `binhost`: invalid binhost URL `binhost:8080`"):
        staves.build(hello_spec, builder, [f"oci:{tmp_path / 'p'}"], binhost=["binhost:8080"])
    with pytest.raises(TypeError, match="`binhost` must be a URL or a list of URLs"):
        staves.build(hello_spec, builder, [f"oci:{tmp_path / 'q'}"], binhost=8080)  # type: ignore[arg-type]


def test_docker_builder_network():
    assert staves.DockerBuilder().network is None
    assert staves.DockerBuilder(network="staves-net").network == "staves-net"


def test_export_binhost_names_a_missing_volume(engine, tmp_path):
    with pytest.raises(staves.StavesError, match="there is no build cache volume `staves-py-no-such-volume`"):
        staves.export_binhost("staves-py-no-such-volume", tmp_path / "out", builder_image="staves-test/stage3:latest")
    assert not (tmp_path / "out").exists()


def test_spec_binhosts_come_after_the_binhost_argument(tmp_path, rootfs):
    text = HELLO.read_text() + "\n[build]\nbinhost = ['http://spec:3', 'http://both:2']\n"
    spec = staves.ImageSpec.from_toml(text)
    assert spec.build == {"binhost": ["http://spec:3", "http://both:2"]}
    assert staves.ImageSpec(**spec.to_dict()) == spec
    assert staves.ImageSpec.from_file(HELLO).build == {}
    # The plan has the spec's binhosts; a build puts its own first, each URL once, in one fetch step.
    conf = staves.plan(spec, jobs=2).files["/etc/portage/binrepos.conf/staves.conf"]
    assert conf.index("sync-uri = http://spec:3\n") < conf.index("sync-uri = http://both:2\n")
    builder = staves.MockBuilder(rootfs)
    report = staves.build(spec, builder, [f"oci:{tmp_path / 'o'}"], binhost=["http://flag:1", "http://both:2"], jobs=2)
    fetches = [s for s in report.steps if s.kind == "fetch-binaries"]
    assert [s.label for s in fetches] == ["Fetch binary packages from 3 binhosts"]
    plain = [s.argv for s in staves.plan(staves.ImageSpec.from_file(HELLO), jobs=2).steps]
    assert len(builder.steps_run) == len(plain) + 1
    with pytest.raises(TypeError, match="unknown key"):
        staves.ImageSpec("a/b", build={"binhosts": ["http://x"]})
    bad = staves.ImageSpec.from_toml(HELLO.read_text() + "\n[build]\nbinhost = ['binhost:8080']\n")
    [diagnostic] = bad.validate()
    assert diagnostic.key == "build.binhost[0]" and "not a usable binhost URL" in diagnostic.message

"""``staves.lock()`` and ``build(..., locked=True)``: resolving against a snapshot on the engine, and the lock
errors (no engine needed for those)."""

import pytest

import staves
from conftest import FIXTURE_PORTAGE, FIXTURE_STAGE3, images_present

BOTH = "staves-test/portage:versioned-both"
SPEC = "name = 'staves-test/py-lock'\npackages = ['app-misc/versioned']\n"


def spec_in(tmp_path, text=SPEC):
    path = tmp_path / "staves.toml"
    path.write_text(text)
    return staves.ImageSpec.from_file(path)


def test_locked_build_without_a_lock_is_refused_before_anything_runs(tmp_path):
    spec = spec_in(tmp_path)
    mock = staves.MockBuilder(str(tmp_path))
    with pytest.raises(staves.StavesError, match="staves lock") as info:
        staves.build(spec, mock, [f"rootfs:{tmp_path / 'r.tar'}"], locked=True)
    assert info.value.exit_code == 1
    assert mock.steps_run == []
    # Without `locked`, a spec with no lock builds unlocked.
    report = staves.build(spec, mock, [f"rootfs:{tmp_path / 'r.tar'}"])
    assert report.lock.locked is False
    assert "resolve" not in [s.kind for s in report.steps]


def test_a_broken_lock_is_a_spec_error_with_its_position(tmp_path):
    spec = spec_in(tmp_path)
    (tmp_path / "staves.lock").write_text("version = 1\nspec-hash = 'sha256:x\n")
    with pytest.raises(staves.SpecError) as info:
        staves.build(spec, staves.MockBuilder(str(tmp_path)), [f"rootfs:{tmp_path / 'r.tar'}"])
    assert info.value.line == 2 and info.value.column is not None
    assert info.value.path.endswith("staves.lock")
    (tmp_path / "staves.lock").write_text("version = 9\n")
    with pytest.raises(staves.SpecError, match="newer Staves"):
        staves.build(spec, staves.MockBuilder(str(tmp_path)), [f"rootfs:{tmp_path / 'r.tar'}"])


def test_lock_resolves_against_the_given_snapshot(tmp_path, engine, cache_volume):
    if not images_present(BOTH):
        pytest.fail(f"{BOTH} is missing (run tests/fixtures/build-images.sh)")
    spec = spec_in(tmp_path)
    builder = staves.DockerBuilder(
        FIXTURE_STAGE3, portage_image=FIXTURE_PORTAGE, build_cache=cache_volume, ssh=False, netrc=False
    )
    lines = []
    result = staves.lock(spec, builder, on_log=lines.append)
    assert [p.atom for p in result.rootfs if "versioned" in p.atom] == ["=app-misc/versioned-1::gentoo"]
    assert result.path == str(tmp_path / "staves.lock")
    assert {c.kind for c in result.changes} == {"added"}
    assert result.portage_image and result.portage_image.startswith("sha256:")
    assert any("emerge" in line or "ebuild" in line for line in lines)
    first = (tmp_path / "staves.lock").read_text()

    # Another snapshot, given to lock() itself: the newer version, and the change is named.
    other = tmp_path / "other.lock"
    upgraded = staves.lock(spec, builder, portage_image=BOTH, output=str(other))
    assert [p.atom for p in upgraded.rootfs if "versioned" in p.atom] == ["=app-misc/versioned-2::gentoo"]
    assert upgraded.path == str(other)
    assert (tmp_path / "staves.lock").read_text() == first
    assert upgraded.to_dict()["rootfs"][0]["atom"].startswith("=")

"""Private by default: folders 0700 and files 0600 whatever the umask; concurrent writers."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from jitctl.files import private_dir, write_private

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def open_umask():
    old = os.umask(0)  # the worst case: everything created 0777 / 0666 unless jitctl says so
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_under_umask_0(tmp_path, open_umask):
    path = tmp_path / "state" / "deep" / "emulator.json"
    write_private(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert mode(path) == 0o600
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state" / "deep") == 0o700
    write_private(path, b"[]")  # replacing keeps the mode
    assert path.read_bytes() == b"[]" and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["emulator.json"]  # no temp file left


def test_existing_parents_are_left_alone_but_own_folders_are_tightened(tmp_path, open_umask):
    common = tmp_path / "common"
    common.mkdir(mode=0o755)
    private_dir(common / "jitctl")
    assert mode(common) == 0o755 and mode(common / "jitctl") == 0o700
    mine = tmp_path / "rdp"
    mine.mkdir(mode=0o777)
    private_dir(mine)
    assert mode(mine) == 0o777  # not created now, not declared ours: untouched
    private_dir(mine, own=True)
    assert mode(mine) == 0o700


def test_concurrent_writers_never_collide(tmp_path):
    path = tmp_path / "data" / "emulator.json"
    errors: list[BaseException] = []
    payloads = [bytes([65 + i]) * 5000 for i in range(16)]

    def writer(data: bytes) -> None:
        try:
            for _ in range(20):
                write_private(path, data)
        except BaseException as err:  # the old fixed '.tmp' name raised FileNotFoundError here
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads  # one writer's whole content, never a mix
    assert [p.name for p in path.parent.iterdir()] == ["emulator.json"]


def test_failed_write_leaves_no_temp_file(tmp_path):
    folder = tmp_path / "d"
    with pytest.raises(TypeError):
        write_private(folder / "x", "not bytes")  # type: ignore[arg-type]
    assert list(folder.iterdir()) == []
    assert not (folder / "x").exists()


def test_emulator_state_folder_is_private(tmp_path, open_umask, monkeypatch):
    from jitctl.app import App

    state = tmp_path / "xdg" / "jitctl" / "emulator.json"
    monkeypatch.setenv("JITCTL_EMULATOR_STATE", str(state))
    app = App(emulator=True)
    assert app.subscription_id  # loads the emulator
    app.close()  # saves its state
    assert mode(state) == 0o600
    assert mode(state.parent) == 0o700 and mode(state.parent.parent) == 0o700

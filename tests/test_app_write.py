"""The app role's module app_write: several files in one task, each written only when its
content, mode or owner differs, atomically, with the contents never in the result."""

from __future__ import annotations

import os
import stat

import pytest

from test_app_plugins import load, run_module

write_mod = load("app_write_module", "library/app_write.py")


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def spec(path, content="a=1\n", mode="0640") -> dict:
    return {"path": str(path), "content": content, "mode": mode}


def test_a_missing_file_is_written_with_its_mode(tmp_path):
    target = tmp_path / "f.env"
    assert write_mod.ensure_file(spec(target, mode="0600"), check_mode=False) is True
    assert target.read_text() == "a=1\n" and mode_of(target) == 0o600


def test_a_file_that_is_right_is_not_touched(tmp_path):
    target = tmp_path / "f.env"
    write_mod.ensure_file(spec(target), check_mode=False)
    inode = os.stat(target).st_ino
    assert write_mod.ensure_file(spec(target), check_mode=False) is False
    assert os.stat(target).st_ino == inode


def test_other_content_replaces_the_file_and_a_wrong_mode_is_corrected_in_place(tmp_path):
    target = tmp_path / "f.env"
    target.write_text("planted\n")
    os.chmod(target, 0o666)
    assert write_mod.ensure_file(spec(target), check_mode=False) is True
    assert target.read_text() == "a=1\n" and mode_of(target) == 0o640
    os.chmod(target, 0o644)
    inode = os.stat(target).st_ino
    assert write_mod.ensure_file(spec(target), check_mode=False) is True
    assert mode_of(target) == 0o640 and os.stat(target).st_ino == inode


def test_check_mode_reports_and_writes_nothing(tmp_path):
    target = tmp_path / "f.env"
    target.write_text("planted\n")
    assert write_mod.ensure_file(spec(target), check_mode=True) is True
    assert target.read_text() == "planted\n"
    assert write_mod.ensure_directory({"path": str(tmp_path / "d"), "mode": "0750"}, check_mode=True) is True
    assert not (tmp_path / "d").exists()


def test_the_directory_is_created_and_corrected(tmp_path):
    directory = tmp_path / "stateful"
    assert write_mod.ensure_directory({"path": str(directory), "mode": "0750"}, check_mode=False) is True
    assert directory.is_dir() and mode_of(directory) == 0o750
    assert write_mod.ensure_directory({"path": str(directory), "mode": "0750"}, check_mode=False) is False
    # Its parents too, as /etc/nginx/conf.d before nginx is installed.
    nested = tmp_path / "etc" / "nginx" / "conf.d"
    assert write_mod.ensure_directory({"path": str(nested), "mode": "0755"}, check_mode=False) is True
    assert nested.is_dir() and mode_of(nested) == 0o755
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_mod.ensure_directory({"path": str(tmp_path / "plain"), "mode": "0750"}, check_mode=False)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="not an absolute path"):
        write_mod.ensure_file(spec("relative.env"), check_mode=False)
    with pytest.raises(ValueError, match="does not exist"):
        write_mod.ensure_file(spec(tmp_path / "missing" / "f.env"), check_mode=False)
    with pytest.raises(ValueError, match="octal"):
        write_mod.ensure_file(spec(tmp_path / "f.env", mode="rw-r-----"), check_mode=False)


def test_the_module_names_what_changed_and_never_shows_a_content(tmp_path):
    directory = tmp_path / "stateful"
    args = {"directory": {"path": str(directory), "mode": "0750"},
            "files": [spec(directory / "compose.yaml", "services: {}\n"),
                      spec(directory / ".env", "POSTGRES_PASSWORD=Zq8vT3pL0xW9yR2k\n", "0600")]}
    result = run_module("library/app_write.py", args, tmp_path)
    assert result["changed"] is True
    assert result["changed_files"] == [str(directory), str(directory / "compose.yaml"), str(directory / ".env")]
    assert "Zq8vT3pL0xW9yR2k" not in str(result)
    assert (directory / ".env").read_text() == "POSTGRES_PASSWORD=Zq8vT3pL0xW9yR2k\n"
    again = run_module("library/app_write.py", args, tmp_path)
    assert again["changed"] is False and again["changed_files"] == []

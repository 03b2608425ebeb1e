"""The doctor's file checks: the configuration and the files of secrets it names must not be readable by all."""

from __future__ import annotations

from pathlib import Path

from libcluster import config, doctor


def _root(tmp_path: Path, key_file: Path) -> tuple[config.Section, Path]:
    path = tmp_path / "config.yaml"
    path.write_text(f"cookbooks_base_dirs: [{tmp_path}]\nlogs_base_dir: {tmp_path}/logs\n"
                    f"locks:\n  etcd_url: https://127.0.0.1:2379\n  etcd_key_file: {key_file}\n"
                    f"  etcd_ca_file: {tmp_path}/ca.pem\n")
    path.chmod(0o640)
    return config.load(path), path


def test_a_world_readable_key_file_fails_naming_it_and_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "etcd.key"
    key.write_text("KEY")
    key.chmod(0o644)
    root, path = _root(tmp_path, key)
    (tmp_path / "cookbooks").mkdir()
    lines = [line.render() for line in doctor.check_files(root, path) if "cookbooks_base_dirs" not in line.what]
    assert lines[0] == f"OK    config {path}: owner and mode keep its secrets"
    assert lines[1] == (f"FAIL  file locks.etcd_key_file: readable by everyone (mode 0644); fix: chown root:root {key} "
                        f"&& chmod 0600 {key}")
    assert not [line for line in lines if "ca_file" in line]  # a CA is no secret
    key.chmod(0o600)
    assert [line.render() for line in doctor.check_files(root, path)][1].startswith("OK    file locks.etcd_key_file")


def test_a_missing_key_file_and_an_unwritable_log_dir_fail(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the log directory should be")
    root, path = _root(tmp_path, tmp_path / "missing.key")
    lines = [line.render() for line in doctor.check_files(root, path) if "cookbooks_base_dirs" not in line.what]
    assert lines[1] == (f"FAIL  file locks.etcd_key_file: {tmp_path}/missing.key does not exist; fix: create it or "
                        "correct locks.etcd_key_file")
    assert lines[2] == (f"FAIL  logs_base_dir: {tmp_path}/logs not writable ({tmp_path}/logs is not a directory); "
                        f"fix: create {tmp_path}/logs (a directory, 0750, of the user running cookbooks) or correct "
                        "the key")
    assert lines[3].startswith(f"FAIL  audit_log: {tmp_path}/logs/audit.jsonl not writable ({tmp_path}/logs is not a "
                               "directory)")


def test_file_locks_in_a_directory_others_may_write_fail(tmp_path: Path) -> None:
    shared = tmp_path / "locks"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    path = tmp_path / "config.yaml"
    path.write_text(f"cookbooks_base_dirs: [{tmp_path}]\nlogs_base_dir: {tmp_path}\nlocks: {{file_dir: {shared}}}\n")
    lines = [line.render() for line in doctor.check_etcd(config.load(path))]
    assert len(lines) == 1 and lines[0].startswith("FAIL  locks: key 'locks.file_dir': lock directory ")
    assert "writable by group or others (mode 0777)" in lines[0]
    assert lines[0].endswith(f"fix: remove {shared} (it is created 0700 for the user running cookbooks) or set "
                             "locks.file_dir")
    shared.chmod(0o700)
    assert [line.render() for line in doctor.check_etcd(config.load(path))] == [
        f"OK    locks: file locks in {shared} (no locks.etcd_url): runs on other hosts are not kept apart"]


def test_cookbook_directories_others_may_change_fail(tmp_path: Path) -> None:
    tree = tmp_path / "cookbooks"
    tree.mkdir()
    tree.chmod(0o777)
    root, path = _root(tmp_path, tmp_path / "k")
    lines = [line.render() for line in doctor.check_files(root, path) if line.what == "cookbooks_base_dirs"]
    assert lines == [f"FAIL  cookbooks_base_dirs: {tree}: writable by group or others (mode 0777); fix: chown -R "
                     f"root:root {tmp_path} && chmod -R go-w {tmp_path}"]
    tree.chmod(0o755)
    planted = tree / "sre" / "evil.py"
    planted.parent.mkdir()
    planted.write_text("")
    planted.chmod(0o666)
    assert [line.render() for line in doctor.check_files(root, path) if line.what == "cookbooks_base_dirs"] == [
        f"FAIL  cookbooks_base_dirs: {planted}: writable by group or others (mode 0666); fix: chown -R root:root "
        f"{tmp_path} && chmod -R go-w {tmp_path}"]
    planted.unlink()
    planted.parent.rmdir()
    assert [line.render() for line in doctor.check_files(root, path) if line.what == "cookbooks_base_dirs"] == [
        f"OK    cookbooks_base_dirs: {tree} changed by its owner only"]
    tree.rmdir()
    assert [line.render() for line in doctor.check_files(root, path) if line.what == "cookbooks_base_dirs"] == [
        f"FAIL  cookbooks_base_dirs: {tree} is not a directory; fix: install the cookbooks there or correct "
        f"cookbooks_base_dirs ({tmp_path})"]


def test_etcd_without_tls_or_users_fails_with_the_fix_and_is_not_even_read(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"cookbooks_base_dirs: [{tmp_path}]\nlogs_base_dir: {tmp_path}\n"
                    "locks: {etcd_url: 'http://127.0.0.1:1'}\nhooks: {node_etcd_url: 'http://198.51.100.7:2379'}\n")
    lines = [line.render() for line in doctor.check_etcd(config.load(path))]
    risk = "whoever reaches etcd can delete or plant locks and forge hook events; fix: serve etcd over https with a " \
        "certificate and turn its authentication on, with users and roles (the runner's may write the locks and " \
        "hook events, the nodes' only the hooks prefix), then set "
    assert lines == [
        f"FAIL  etcd locks: http://127.0.0.1:1: no TLS (http) and no etcd user: {risk}locks.etcd_url (https://), "
        "etcd_ca_file, etcd_user and etcd_password",
        f"FAIL  etcd hook events: http://127.0.0.1:1: no TLS (http) and no etcd user: {risk}hooks.etcd_url (or "
        "locks.etcd_url) with its CA, user and password",
        f"FAIL  etcd hook events nodes' user: http://198.51.100.7:2379: no TLS (http) and no etcd user: {risk}"
        "hooks.node_etcd_url (https://), node_etcd_ca_file, node_etcd_user and node_etcd_password"]


def test_etcd_over_tls_without_a_user_fails_too(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"cookbooks_base_dirs: [{tmp_path}]\nlogs_base_dir: {tmp_path}\n"
                    "locks: {etcd_url: 'https://127.0.0.1:1'}\n")
    [line] = [line.render() for line in doctor.check_etcd(config.load(path))]
    assert line.startswith("FAIL  etcd locks: https://127.0.0.1:1: no etcd user: whoever reaches etcd can delete")

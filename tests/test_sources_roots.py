"""Names are names, manifests stay within their roots, unreadable sources stop the command:
on real files, and on a real S3 API server (moto on loopback)."""

from __future__ import annotations

import pandas as pd
import pytest
import s3fs

from lid_dask.errors import SourceError
from lid_dask.sources import iter_entries


@pytest.fixture
def takes(tmp_path):
    """Files whose names hold glob characters, next to files their patterns would match."""
    for name in ("take1.wav", "take2.wav", "take[12].wav", "bracket[1].wav", "what?.mp3", "set[1]/in.flac"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * len(name))
    return tmp_path


def test_an_existing_name_is_that_file_not_a_pattern(takes):
    assert list(iter_entries(str(takes / "take[12].wav"))) == [(str(takes / "take[12].wav"), 12)]
    assert list(iter_entries(str(takes / "bracket[1].wav"))) == [(str(takes / "bracket[1].wav"), 14)]
    assert list(iter_entries(str(takes / "what?.mp3"))) == [(str(takes / "what?.mp3"), 9)]
    assert list(iter_entries(str(takes / "set[1]"))) == [(str(takes / "set[1]/in.flac"), 14)]


def test_a_name_under_which_nothing_exists_is_a_pattern(takes):
    assert list(iter_entries(str(takes / "take[2].wav"))) == [(str(takes / "take2.wav"), 9)]
    assert [uri for uri, _ in iter_entries(str(takes / "take?.wav"))] == [str(takes / "take1.wav"),
                                                                       str(takes / "take2.wav")]


def test_a_pattern_matching_nothing_and_a_missing_folder_stop_the_command(takes):
    with pytest.raises(SourceError, match=r"nothing\.\[0-9\]\.wav: no file has this name.*matches nothing"):
        list(iter_entries(str(takes / "nothing.[0-9].wav")))
    with pytest.raises(SourceError, match="no-such-folder: no such file, folder or prefix"):
        list(iter_entries(str(takes / "no-such-folder")))


def write_manifest(folder, rows, name="list.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"uri": rows}).to_csv(folder / name, index=False)
    return str(folder / name)


@pytest.mark.parametrize("row", ["../outside.wav", "sub/../../outside.wav", "/etc/passwd.wav",
                                 "file:///etc/passwd.wav", "http://169.254.169.254/latest/meta-data.wav",
                                 "s3://someone-elses-bucket/a.wav"])
def test_a_manifest_row_outside_its_roots_refuses_the_whole_manifest(tmp_path, row):
    manifest = write_manifest(tmp_path / "lists", ["a.wav", "sub/b.wav", row])
    entries = iter_entries(manifest)
    with pytest.raises(SourceError) as info:
        next(entries)  # nothing is returned before the check: a refused manifest registers nothing
    message = str(info.value)
    assert f"manifest {manifest}, row 3: " in message and "outside the allowed roots" in message
    assert str(tmp_path / "lists") in message and "allowed_roots" in message and "--allow-root" in message


def test_allowed_roots_let_a_manifest_point_elsewhere(tmp_path):
    rows = ["a.wav", "../shared/b.wav", "https://cdn.example.org/c.mp3", "s3://archive/d/e.opus"]
    manifest = write_manifest(tmp_path / "lists", rows)
    allowed = [str(tmp_path / "shared"), "https://cdn.example.org", "s3://"]
    assert [uri for uri, _ in iter_entries(manifest, allowed_roots=allowed)] == [
        f"{tmp_path}/lists/a.wav", f"{tmp_path}/lists/../shared/b.wav", rows[2], rows[3]]
    with pytest.raises(SourceError, match="row 4: s3://archive/d/e.opus"):  # a root with a path is a prefix
        list(iter_entries(manifest, allowed_roots=[*allowed[:2], "s3://archive/other/"]))


def test_the_other_sources_of_the_command_are_allowed_roots(tmp_path):
    manifest = write_manifest(tmp_path / "lists", ["s3://archive/a.wav", f"{tmp_path}/audio/b.wav"])
    (tmp_path / "audio").mkdir()
    entries = list(iter_entries([manifest, "s3://archive/first.wav", str(tmp_path / "audio")]))
    assert [uri for uri, _ in entries] == ["s3://archive/a.wav", f"{tmp_path}/audio/b.wav", "s3://archive/first.wav"]


def test_an_s3_prefix_without_credentials_stops_the_command(s3, no_credentials):
    endpoint_only = {"client_kwargs": s3["client_kwargs"], "skip_instance_cache": True}
    with pytest.raises(SourceError, match=r"cannot read s3://clips/talk/: permission_denied: no credentials"):
        list(iter_entries("s3://clips/talk/", endpoint_only))


def test_an_s3_prefix_in_no_such_bucket_stops_the_command(s3):
    with pytest.raises(SourceError, match=r"s3://no-such-bucket/talk/: no such bucket 'no-such-bucket'"):
        list(iter_entries("s3://no-such-bucket/talk/", s3))
    with pytest.raises(SourceError, match=r"s3://clips/no-such-prefix/: no such file, folder or prefix"):
        list(iter_entries("s3://clips/no-such-prefix/", s3))


def test_an_s3_object_with_glob_characters_is_that_object(s3):
    fs = s3fs.S3FileSystem(**s3)
    fs.pipe({"clips/odd/take[12].wav": b"12345", "clips/odd/take1.wav": b"1"})
    assert list(iter_entries("s3://clips/odd/take[12].wav", s3)) == [("s3://clips/odd/take[12].wav", 5)]

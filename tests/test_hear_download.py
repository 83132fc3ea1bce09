"""`crywatch model pull|list` and weight location without the hub: offline, unreachable, gated, corrupt."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from monitor import model_cmd
from monitor.config import HearSettings, settings_from_dict
from monitor.embed.base import EmbedderError
from monitor.embed.hear import load_hear
from tests.hear_standins import REVISION, fill_hub_cache, write_config

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants, errors  # noqa: E402


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the environment, nothing here may reach (or wait for) the real hub."""
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # refuses at once
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def torch_copy(folder: Path) -> Path:
    """A small but well-formed model.safetensors: `pull` checks completeness, not architecture."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"pooler.dense.weight": np.ones((512, 8), np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def run(tmp_path: Path, *argv: str, **hear: Any) -> int:
    config = write_config(tmp_path / "config.toml", hear={"cache_dir": str(tmp_path / "hub"), **hear})
    parser = argparse.ArgumentParser(prog="crywatch")
    parser.add_argument("--config")
    model_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--config", str(config), "model", *argv])
    return args.func(args)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crywatch: error: "), err
    return lines[0]


def test_pull_offline_with_an_empty_cache_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(tmp_path, "pull", "hear", "--backend", "torch", "--revision", REVISION) == 2
    line = one_line(capsys.readouterr().err)
    assert "HF_HUB_OFFLINE is set" in line and "google/hear-pytorch@" + REVISION in line and "model_dir" in line


def test_pull_without_network_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "pull", "hear", "--backend", "tf", "--revision", "main") == 2
    line = one_line(capsys.readouterr().err)
    assert "cannot reach the Hugging Face hub" in line and "pull hear --backend tf --revision main" in line


def test_pull_finds_a_prefilled_cache_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = fill_hub_cache(tmp_path / "hub", "google/hear-pytorch", torch_copy(tmp_path / "copy"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(tmp_path, "pull", "hear", "--backend", "torch", "--revision", "main") == 0
    out = capsys.readouterr().out
    assert f"google/hear-pytorch at revision {REVISION} is in {snapshot}" in out
    assert f'revision = "{REVISION}"' in out


def test_pull_into_a_folder_reports_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = torch_copy(tmp_path / "bedside")  # an offline copy carried over from a connected machine
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(tmp_path, "pull", "hear", "--backend", "torch", "--revision", REVISION, "--dir", str(folder)) == 0
    assert f'model_dir = "{folder}"' in capsys.readouterr().out


def test_default_revision_follows_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fill_hub_cache(tmp_path / "hub", "google/hear-pytorch", torch_copy(tmp_path / "copy"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(tmp_path, "pull", "hear", revision="f" * 40) == 2  # the pinned commit is not in the cache
    assert f"google/hear-pytorch@{'f' * 40}" in one_line(capsys.readouterr().err)
    assert run(tmp_path, "pull", "hear") == 0  # the default pin is google/hear's, so torch means main
    assert REVISION in capsys.readouterr().out


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.unlink()  # a cache snapshot holds a symlink; replace it by a short real file
    path.write_bytes(data[: len(data) // 2])


def test_truncated_safetensors_is_reported_by_pull_and_load(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = fill_hub_cache(tmp_path / "hub", "google/hear-pytorch", torch_copy(tmp_path / "copy"))
    truncate(snapshot / "model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(tmp_path, "pull", "hear", "--backend", "torch", "--revision", REVISION) == 2
    line = one_line(capsys.readouterr().err)
    assert "model.safetensors is truncated or corrupt" in line and "models--google--hear-pytorch and run" in line
    with pytest.raises(EmbedderError, match="truncated or corrupt"):
        load_hear(HearSettings(backend="auto", revision=REVISION, cache_dir=str(tmp_path / "hub")))


def test_snapshot_without_weights_is_a_partial_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = torch_copy(tmp_path / "copy")
    (copy / "model.safetensors").unlink()
    fill_hub_cache(tmp_path / "hub", "google/hear-pytorch", copy)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match=r"model.safetensors is missing \(partial download\)"):
        load_hear(HearSettings(backend="torch", revision=REVISION, cache_dir=str(tmp_path / "hub")))


def test_offline_auto_with_nothing_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match=r"no HeAR weights in .* run `crywatch model pull hear --backend torch"):
        load_hear(HearSettings(backend="auto", revision=REVISION, cache_dir=str(tmp_path)))
    with pytest.raises(EmbedderError, match=r"HF_HUB_OFFLINE is set and google/hear@"):
        load_hear(HearSettings(backend="tf", revision=REVISION, cache_dir=str(tmp_path)))


def test_model_dir_holding_another_commit_is_refused(tmp_path: Path) -> None:
    folder = torch_copy(tmp_path / "copy")
    metadata = folder / ".cache" / "huggingface" / "download" / "model.safetensors.metadata"
    metadata.parent.mkdir(parents=True)
    metadata.write_text(f"{'a' * 40}\netag\n0\n")
    with pytest.raises(EmbedderError, match=f"holds commit {'a' * 40} but \\[hear\\] revision is {REVISION}"):
        load_hear(HearSettings(backend="torch", revision=REVISION, model_dir=str(folder)))


def http_error(kind: type, status: int) -> Exception:
    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return kind(f"{status} Client Error", response=response)


@pytest.mark.parametrize(("raised", "token", "expected"), [
    (lambda: http_error(errors.GatedRepoError, 401), None, r"google/hear-pytorch is gated and no Hugging Face token"),
    (lambda: http_error(errors.GatedRepoError, 403), "hf_x", r"has not been granted google/hear-pytorch .*accept"),
    (lambda: http_error(errors.RepositoryNotFoundError, 401), None, r"not visible to this Hugging Face account"),
    (lambda: http_error(errors.RevisionNotFoundError, 404), "hf_x", r"revision main does not exist in google/"),
    (lambda: errors.IncompleteSnapshotError("3 files missing", snapshot_path="x"), None, r"is incomplete .*again"),
    (lambda: http_error(errors.HfHubHTTPError, 503), "hf_x", r"hub refused google/hear-pytorch@main .*503"),
    (lambda: OSError(28, "No space left on device"), None, r"download of google/hear-pytorch@main failed .*space"),
])
def test_hub_errors_become_one_line_with_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch, raised: Any, token: str | None,
                                              expected: str) -> None:
    def failing(**_: Any) -> str:
        raise raised()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
    assert run(tmp_path, "pull", "hear", "--backend", "torch", "--revision", "main") == 2
    line = one_line(capsys.readouterr().err)
    assert re.search(expected, line), line


def test_list_shows_embedders_and_heads(tmp_path: Path) -> None:
    fill_hub_cache(tmp_path / "hub", "google/hear-pytorch", torch_copy(tmp_path / "copy"))
    models = tmp_path / "models"
    for name, embedder_id in (("cry-hear", f"hear-torch@{REVISION[:12]}"), ("cry-tf", "hear-tf@ffffffffffff")):
        (models / name).mkdir(parents=True)
        (models / name / "head.json").write_text(json.dumps(
            {"name": name, "embedder_id": embedder_id, "dim": 512, "classes": ["not_cry", "pain"]}))
    (models / "broken").mkdir()
    (models / "broken" / "head.json").write_text("{")
    settings = settings_from_dict({"hear": {"cache_dir": str(tmp_path / "hub")}})
    listing = model_cmd.list_models(settings, models)
    assert f"hear-torch@{REVISION[:12]}" in listing.split("heads")[0]
    assert "acoustic-v1" in listing.split("heads")[0]
    assert f"cry-hear{' ' * 18} embedder hear-torch@{REVISION[:12]}  dim 512  classes not_cry, pain  [ready]" \
        in listing
    assert "cry-tf" in listing and "[embedder not present]" in listing
    assert "broken" in listing and "unreadable head.json" in listing


def test_list_command_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "list") == 0
    assert capsys.readouterr().out.startswith("embedders:")

"""A reproduction's checkout of the recorded commit: a real git worktree in a temporary folder,
gone afterwards however it ended."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from nbmill.errors import NbmillError
from nbmill.pipeline import reproduce


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=ada", "-c", "user.email=ada@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with one commit."""
    folder = tmp_path / "repo"
    folder.mkdir()
    git("init", "-q", cwd=folder)
    (folder / "train.py").write_text("print('train')\n")
    git("add", "train.py", cwd=folder)
    git("commit", "-q", "-m", "first", cwd=folder)
    return folder


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """An empty temporary folder for this process: whatever is in it after a test was left
    behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_checkout_holds_the_commit_and_is_gone_afterwards(repo, scratch):
    commit = git("rev-parse", "HEAD", cwd=repo)
    with reproduce.checkout(repo, commit) as tree:
        assert (tree / "train.py").read_text() == "print('train')\n"
    assert list(scratch.iterdir()) == []
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1


def test_a_checkout_of_a_commit_git_cannot_check_out_leaves_no_temporary_folder(repo, scratch):
    with pytest.raises(NbmillError, match="git worktree add 0000000000ab"):
        with reproduce.checkout(repo, "0000000000ab" * 3):
            pass
    assert list(scratch.iterdir()) == []


def test_a_checkout_outside_a_git_repository_leaves_no_temporary_folder(tmp_path, scratch):
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    with pytest.raises(NbmillError, match="git worktree add"):
        with reproduce.checkout(elsewhere, "0" * 40):
            pass
    assert list(scratch.iterdir()) == []

"""A package is the model plus environment.yml and a manifest of sha256s, and it shares nothing
writable with the sealed run it was made from."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmill.errors import NbmillError
from nbmill.governance.events import Notifier
from nbmill.models.package import package_model, verify_package
from nbmill.pipeline import lifecycle
from nbmill.project.config import load_config
from nbmill.records.record import RunRecord
from nbmill.records.verify import verify
from nbmill_example import diabetes
from tests.conftest import ROOT, run_fields


@pytest.fixture
def sealed(project):
    """A sealed run whose folder holds a saved model (``model/``), its final event in the
    ledger, and a package made from that model (``project/package``)."""
    config = load_config(project)
    record = RunRecord.create(config.runs_dir, run_fields())
    train, _ = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    diabetes.save_model(diabetes.fit(train, alpha=1.0), train, record.dir / "model")
    record.finish_step("prep", "completed")
    record.end(None, 1.0)
    record.seal()
    Notifier(config).emit(
        "nbmill.run.completed", lifecycle.subject(record), lifecycle.run_finished(record)
    )
    package_model(record.dir / "model", project / "package", ROOT / "environment.yml")
    return config, record.dir, project / "package"


def write_in_place(path: Path) -> None:
    """Change the file's first byte through the file itself (same inode), as an editor or a
    careless script may."""
    with open(path, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(b"#" if first != b"#" else b"!")


def test_writing_in_place_to_a_package_leaves_the_sealed_run_intact(sealed):
    config, run_dir, package = sealed
    original = (run_dir / "model" / "MLmodel").read_bytes()
    write_in_place(package / "model" / "MLmodel")
    assert (run_dir / "model" / "MLmodel").read_bytes() == original
    assert verify(config.runs_dir, config.ledger, run_dir)[-1].endswith("files match")
    with pytest.raises(NbmillError, match="model/MLmodel"):
        verify_package(package)


def test_writing_in_place_to_the_run_model_leaves_the_package_intact(sealed):
    _, run_dir, package = sealed
    original = (package / "model" / "MLmodel").read_bytes()
    write_in_place(run_dir / "model" / "MLmodel")
    assert (package / "model" / "MLmodel").read_bytes() == original
    assert verify_package(package)["model_sha256"]


def test_a_package_file_is_never_the_run_file_itself(sealed):
    _, run_dir, package = sealed
    for packaged in (package / "model").rglob("*"):
        if packaged.is_file():
            source = run_dir / "model" / packaged.relative_to(package / "model")
            assert packaged.stat().st_nlink == 1 and not packaged.samefile(source), packaged

"""Parameters resolve defaults < params file < -p, and are checked against each notebook."""

from pathlib import Path

import pytest
import yaml

from nbmill.errors import ParamsError
from nbmill.project.params import load_params_file, parse_overrides, resolve_params
from nbmill.project.spec import load_pipeline
from tests.conftest import ROOT, write_notebook


@pytest.fixture
def pipeline(project: Path):
    write_notebook(project / "notebooks" / "prep.ipynb", 'seed = 1\ntest_size = 0.2\nout = "x.csv"')
    write_notebook(
        project / "notebooks" / "train.ipynb",
        'seed = 1\nalpha = 1.0\nlabel = "a"\nflag = False\ndata = "x.csv"',
    )
    spec = {
        "name": "p",
        "params": {"seed": 5},
        "steps": {
            "prep": {"notebook": "notebooks/prep.ipynb", "outputs": {"out": "d.csv"}},
            "train": {
                "notebook": "notebooks/train.ipynb",
                "needs": ["prep"],
                "inputs": {"data": "d.csv"},
                "params": {"alpha": 2.0},
            },
        },
    }
    path = project / "pipelines" / "p.yml"
    path.write_text(yaml.safe_dump(spec))
    return load_pipeline(path, project)


def params_file(project: Path, body: dict, name: str = "dev.yml"):
    path = project / name
    path.write_text(yaml.safe_dump(body))
    return load_params_file(path)


def test_pipeline_defaults_reach_every_step_that_declares_them(pipeline):
    resolved = resolve_params(pipeline)
    assert resolved == {"prep": {"seed": 5}, "train": {"seed": 5, "alpha": 2.0}}


def test_params_file_overrides_pipeline_and_cli_overrides_both(pipeline, project):
    dev = params_file(project, {"params": {"seed": 7}, "steps": {"train": {"alpha": 3.0}}})
    resolved = resolve_params(pipeline, dev, ["seed=9", "train.alpha=0.5"])
    assert resolved["prep"] == {"seed": 9}
    assert resolved["train"] == {"seed": 9, "alpha": 0.5}


def test_a_time_given_for_a_text_parameter_stays_the_time_as_iso_text(pipeline):
    resolved = resolve_params(pipeline, None, ["train.label=2026-12-01T09:00:00Z"])
    assert resolved["train"]["label"] == "2026-12-01T09:00:00+00:00"


def test_a_step_value_beats_a_pipeline_wide_value_from_the_same_source(pipeline, project):
    dev = params_file(project, {"params": {"seed": 7}, "steps": {"train": {"seed": 8}}})
    resolved = resolve_params(pipeline, dev, [])
    assert resolved["prep"]["seed"] == 7 and resolved["train"]["seed"] == 8


def test_unknown_step_parameter_fails_naming_file_step_and_known_names(pipeline, project):
    dev = params_file(project, {"steps": {"train": {"alpah": 0.1}}})
    with pytest.raises(ParamsError) as caught:
        resolve_params(pipeline, dev)
    assert str(caught.value) == (
        f"{project / 'dev.yml'}: step 'train': unknown parameter 'alpah' "
        "(the notebook defines: alpha, flag, label, seed)"
    )


def test_a_pipeline_wide_name_no_notebook_defines_is_an_error(pipeline):
    with pytest.raises(ParamsError, match="-p sead: unknown parameter 'sead' .*no step's notebook"):
        resolve_params(pipeline, None, ["sead=3"])


def test_wrong_type_names_the_expected_type_and_the_default(pipeline):
    with pytest.raises(ParamsError) as caught:
        resolve_params(pipeline, None, ["train.alpha=high"])
    assert (
        "step 'train': parameter 'alpha' should be float like the notebook's default (1.0), "
        "got str 'high'" in str(caught.value)
    )


def test_an_int_is_accepted_for_a_float_and_becomes_a_float(pipeline):
    assert resolve_params(pipeline, None, ["train.alpha=2"])["train"]["alpha"] == 2.0
    assert isinstance(resolve_params(pipeline, None, ["train.alpha=2"])["train"]["alpha"], float)


def test_a_bool_is_not_an_int(pipeline):
    with pytest.raises(ParamsError, match="'seed' should be int"):
        resolve_params(pipeline, None, ["seed=true"])


def test_unknown_step_in_overrides_is_named(pipeline):
    with pytest.raises(ParamsError, match=r"unknown step 'trian' \(steps: prep, train\)"):
        resolve_params(pipeline, None, ["trian.alpha=1"])


def test_inputs_and_outputs_cannot_be_set_as_parameters(pipeline):
    with pytest.raises(ParamsError, match="'data' is an input of step 'train'"):
        resolve_params(pipeline, None, ["train.data=/tmp/other.csv"])


def test_an_input_the_notebook_does_not_declare_is_an_error(project, pipeline):
    write_notebook(project / "notebooks" / "train.ipynb", "alpha = 1.0")
    with pytest.raises(ParamsError, match="step 'train': input 'data' is not a parameter"):
        resolve_params(pipeline)


@pytest.mark.parametrize("item", ["alpha", "=3", "train.1x=3"])
def test_malformed_overrides_are_rejected(item):
    with pytest.raises(ParamsError, match="-p"):
        parse_overrides([item])


def test_override_values_are_read_as_yaml_scalars():
    values = [layer.values for layer in parse_overrides(["a=1", "b=0.5", "c=true", "d=text", "e="])]
    assert values == [{"a": 1}, {"b": 0.5}, {"c": True}, {"d": "text"}, {"e": ""}]


def test_a_params_file_with_an_unknown_section_is_rejected(project):
    with pytest.raises(ParamsError, match="dev.yml: unknown section 'alpha'"):
        params_file(project, {"alpha": 1})


def test_every_shipped_params_file_resolves_against_the_training_pipeline():
    pipeline = load_pipeline(ROOT / "pipelines" / "training.yml")
    for path in sorted((ROOT / "params").glob("*.yml")):
        resolved = resolve_params(pipeline, load_params_file(path))
        assert resolved["train"]["alpha"] > 0, path.name


def test_an_env_reference_is_kept_as_the_reference_not_the_value(pipeline, monkeypatch):
    monkeypatch.setenv("NBMILL_TEST_LABEL", "hidden-value")
    resolved = resolve_params(pipeline, None, ["train.label=${env:NBMILL_TEST_LABEL}"])
    value = resolved["train"]["label"]
    assert value == "${env:NBMILL_TEST_LABEL}" and value.value() == "hidden-value"


def test_an_env_reference_to_an_unset_variable_fails_before_running(pipeline, monkeypatch):
    monkeypatch.delenv("NBMILL_TEST_UNSET", raising=False)
    with pytest.raises(ParamsError, match="NBMILL_TEST_UNSET is not set; export it"):
        resolve_params(pipeline, None, ["train.label=${env:NBMILL_TEST_UNSET}"])


def test_an_env_reference_needs_a_string_parameter(pipeline, monkeypatch):
    monkeypatch.setenv("NBMILL_TEST_ALPHA", "0.5")
    with pytest.raises(ParamsError, match="'alpha' is .* the notebook's default \\(1.0\\) is not"):
        resolve_params(pipeline, None, ["train.alpha=${env:NBMILL_TEST_ALPHA}"])


def test_run_dir_is_the_runner_s_to_set(pipeline):
    with pytest.raises(ParamsError, match="'run_dir' is set by the runner to the run folder"):
        resolve_params(pipeline, None, ["run_dir=/tmp/elsewhere"])

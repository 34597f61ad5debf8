"""Every probe subcommand of the CLI on the torch example shipped in examples/."""

from __future__ import annotations

import pytest

from .cli_cases import EXAMPLES, cases, check, check_refused, refused

MODULE = str(EXAMPLES / "torch_digits.py")


@pytest.mark.parametrize(
    "argv, result", cases(f"{MODULE}:cnn", f"{MODULE}:mlp", f"{MODULE}:mlp_seed1")
)
def test_probe_subcommand_on_the_example(tmp_path, capsys, argv, result):
    check(tmp_path, capsys, argv, result)


@pytest.mark.parametrize("argv, message", refused(f"{MODULE}:cnn", f"{MODULE}:mlp"))
def test_bad_options_are_refused_before_the_model_is_built(
    tmp_path, capsys, monkeypatch, argv, message
):
    check_refused(tmp_path, capsys, monkeypatch, argv, message)

"""--report-to mlflow sends no usage telemetry unless the user chose otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

SRC = str(Path(__file__).resolve().parents[1] / "src")
_PROBE = """
import json, os, sys
if sys.argv[1] == "imported-first":
    import mlflow
from intrinsic_dim.tracking import make_tracker
make_tracker("mlflow", sys.argv[2], "accuracy")
from mlflow.telemetry.client import get_telemetry_client
from mlflow.telemetry.utils import is_telemetry_disabled
print(json.dumps([os.environ.get("MLFLOW_DISABLE_TELEMETRY"), get_telemetry_client() is None, is_telemetry_disabled()]))
"""
# the variables with which MLflow turns telemetry off by itself (CI, pytest): a user's plain shell has none of them
_CI = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS", "TF_BUILD",
       "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION",
       "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID")


def _probe(tmp_path: Path, when: str, **env: str) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in _CI and k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    clean |= {"PYTHONPATH": SRC, "MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"} | env
    out = subprocess.run([sys.executable, "-c", _PROBE, when, str(tmp_path)], env=clean, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("when", ["imported-first", "imported-by-the-tracker"])
def test_mlflow_telemetry_is_off_by_default(tmp_path, when):
    assert _probe(tmp_path, when) == ["true", True, True]


def test_a_users_own_telemetry_choice_is_kept(tmp_path):
    assert _probe(tmp_path, "imported-by-the-tracker", MLFLOW_DISABLE_TELEMETRY="false") == ["false", False, False]
    assert _probe(tmp_path, "imported-by-the-tracker", DO_NOT_TRACK="true") == [None, True, True]

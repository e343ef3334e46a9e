"""The command line: output, JSON shape, files, and exit 2 with a field path on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from saga_sim.cli import main

ROOT = Path(__file__).resolve().parent.parent
SIGNUP = str(ROOT / "scenarios" / "user_registration.yaml")


def cli(*args: str) -> tuple[int, str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "saga_sim", *args], cwd=ROOT, capture_output=True, text=True
    )
    return out.returncode, out.stdout, out.stderr


def test_run_json_shape_and_divergence():
    code, out, err = cli(
        "run",
        SIGNUP,
        "--seed",
        "7",
        "--json",
        "--fault",
        "{kind: drop, step: create_user, leg: reply}",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["scenario"] == "user-registration" and data["seed"] == 7
    assert set(data["styles"]) == {"orchestration", "choreography"}
    assert data["styles"]["orchestration"]["outcomes"]["completed"] == 1
    # the orchestrator's retry and the choreography's outbox relay both recover the lost reply
    assert data["styles"]["choreography"]["outcomes"]["completed"] == 1
    assert data["styles"]["choreography"]["retries"] == 1
    assert data["styles"]["orchestration"]["messages"] > 0
    assert "differ" in data["divergence"]


def test_run_human_output_names_both_styles():
    code, out, _ = cli("run", SIGNUP, "--fault", "{kind: fail_step, step: send_welcome_email}")
    assert code == 0
    assert "orchestration" in out and "choreography" in out
    line = next(x for x in out.splitlines() if x.startswith("compensated"))
    assert line.split()[1:] == ["1", "1"]


def test_run_out_dir_writes_frames(tmp_path):
    assert (
        main(["run", SIGNUP, "--sagas", "4", "--out", str(tmp_path), "--style", "choreography"])
        == 0
    )
    ev = pd.read_csv(tmp_path / "events.csv")
    sg = pd.read_csv(tmp_path / "sagas.csv")
    assert set(ev["style"]) == {"choreography"}
    assert sorted(sg["saga"]) == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run.json").read_text())["sagas"] == 4


def test_validate_and_schema(capsys):
    assert main(["validate", SIGNUP]) == 0
    assert "valid scenario 'user-registration'" in capsys.readouterr().out
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "steps" in schema["properties"]


BAD = {
    "syntax": ("name: x\nsteps: [1, 2\n", "line 3"),
    "unknown key": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do}]\n"
        "policy: {retry: 3}\n",
        "policy.retry: unknown key 'retry' (did you mean 'retries'?)",
    ),
    "bad reference": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: b, action: do}]\n",
        "steps[0].service: unknown service 'b'",
    ),
    "bad number": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do, duration: "
        "{dist: exponential, mean: -2}}]\n",
        "steps[0].duration.mean: Input should be greater than 0",
    ),
    "wrong type": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do}]\n"
        "workload: {sagas: many}\n",
        "workload.sagas: Input should be a valid integer",
    ),
    "negative time": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do}]\n"
        "faults: [{kind: crash, service: a, at: -1, for: 1}]\n",
        "faults[0].at: Input should be greater than or equal to 0",
    ),
    "huge workload": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do}]\n"
        "workload: {sagas: 100000000}\n",
        "workload.sagas: Input should be less than or equal to 1000000",
    ),
    "unknown fault step": (
        "name: x\nservices: {a: {}}\nsteps: [{name: s, service: a, action: do}]\n"
        "faults: [{kind: fail_step, step: t}]\n",
        "faults[0].step: unknown step 't'",
    ),
    "not a mapping": ("- just\n- a list\n", "must be a YAML mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("verb", ["validate", "run"])
def test_bad_input_exits_2_with_the_field_path(tmp_path, case, verb):
    text, expected = BAD[case]
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    code, out, err = cli(verb, str(f))
    assert code == 2
    assert "Traceback" not in err + out
    assert str(f) in err
    assert expected in err


def test_oversized_file(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("name: x\ndescription: '" + "x" * (1024 * 1024) + "'\n")
    code, _, err = cli("validate", str(f))
    assert code == 2 and "1 MiB" in err and "Traceback" not in err


def test_missing_file_and_bad_fault_flag():
    code, _, err = cli("run", "does-not-exist.yaml")
    assert code == 2 and "does-not-exist.yaml" in err and "Traceback" not in err
    code, _, err = cli("run", SIGNUP, "--fault", "{kind: fail_step, step: create_usr}")
    assert code == 2
    assert "--fault[0].step: unknown step 'create_usr' (did you mean 'create_user'?)" in err
    code, _, err = cli("run", SIGNUP, "--fault", "{kind: crash, service: identity")
    assert code == 2 and "--fault[0]" in err and "YAML syntax error" in err
    code, _, err = cli("run", SIGNUP, "--seed", "-3")
    assert code == 2 and "--seed" in err and "Traceback" not in err

"""Experiments: fault matrix, Monte Carlo, sweeps, find-and-shrink, their CLI and figures."""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import saga_sim as ss
from saga_sim import cli_experiments
from saga_sim import coursework as cw
from saga_sim.experiments import (
    FAULT_TYPES,
    derive_seed,
    get_param,
    param_paths,
    wilson,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
SEED_FILE = ROOT / "scenarios" / "user_registration.yaml"


@pytest.fixture(scope="module")
def seed_sc() -> ss.Scenario:
    return ss.load_scenario(SEED_FILE)


@pytest.fixture(scope="module")
def seed_matrix(seed_sc: ss.Scenario) -> pd.DataFrame:
    return ss.fault_matrix(seed_sc, seed=3)


def expected_points(sc: ss.Scenario) -> int:
    """1 (no fault) + 8 per step + 3 per compensatable step whose next step can fail it."""
    steps = sc.steps
    c = sum(
        1
        for i, s in enumerate(steps)
        if s.undoable and i + 1 < len(steps) and steps[i + 1].kind != "retriable"
    )
    return 1 + 8 * len(steps) + 3 * c


# --------------------------------------------------------------------------------------------
# Fault matrix


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_matrix_covers_every_point(path: Path) -> None:
    sc = ss.load_scenario(path)
    df = ss.fault_matrix(sc, seed=1)
    points = expected_points(sc)
    assert ss.count_fault_points(sc) == points
    assert len(df) == 2 * points
    assert not df.duplicated(["point", "style"]).any()
    assert set(df["style"]) == set(ss.STYLES)
    assert set(df["fault_type"]) <= set(FAULT_TYPES)
    per_step = {
        "fail_step",
        "crash_before_commit",
        "crash_after_commit",
        "drop_request",
        "drop_reply",
        "duplicate_request",
        "delay_request",
        "coordinator_crash_executing",
    }
    for s in sc.steps:
        assert per_step <= set(df.loc[df["step"] == s.name, "fault_type"])
    assert set(df["outcome"]) <= set(ss.OUTCOMES)


def test_matrix_cells_equal_direct_simulate(seed_sc: ss.Scenario, seed_matrix: pd.DataFrame):
    for row in seed_matrix.itertuples(index=False):
        run = ss.simulate(seed_sc, row.style, faults=row.fault_yaml, seed=3, sagas=1)
        assert run.outcome == row.outcome, row.point
        assert [v.invariant for v in run.violations] == row.violations, row.point
        assert run.metrics["messages"] == row.messages, row.point
        lat = run.sagas["latency"].iloc[0]
        assert (math.isnan(lat) and math.isnan(row.latency)) or lat == row.latency, row.point


def test_matrix_shows_the_lessons(seed_matrix: pd.DataFrame) -> None:
    cell = seed_matrix.set_index(["point", "style"])
    assert cell.loc[("none", "orchestration"), "outcome"] == "completed"
    # A lost result: the orchestrator retries, the choreography's outbox relay publishes it again.
    for style in ss.STYLES:
        row = cell.loc[("create_user/drop_reply", style)]
        assert row["outcome"] == "completed" and row["retries"] == 1
    for style in ss.STYLES:
        assert cell.loc[("create_user/fail_step", style), "outcome"] == "compensated"
        row = cell.loc[("create_user/compensation_fails_always", style)]
        assert row["outcome"] == "inconsistent"
        assert "semantic_atomicity" in row["violations"]
    # Crash points use the core's triggers: the same fault in both styles.
    for when in ("before", "after"):
        rows = seed_matrix[seed_matrix["point"] == f"create_user/crash_{when}_commit"]
        assert rows["fault_yaml"].nunique() == 1
        (fault,) = ss.parse_faults(rows["fault_yaml"].iloc[0], ss.load_scenario(SEED_FILE))
        assert (fault.service, fault.when, fault.step) == (
            "identity",
            f"{when}_commit",
            "create_user",
        )


def test_matrix_in_a_process_pool_equals_serial(seed_sc, seed_matrix) -> None:
    with ProcessPoolExecutor(2) as pool:
        df = ss.fault_matrix(seed_sc, seed=3, executor=pool)
    pd.testing.assert_frame_equal(df, seed_matrix)


def test_fault_points_match_the_matrix(seed_sc, seed_matrix) -> None:
    fp = ss.fault_points(seed_sc, seed=3)
    assert fp["point"].tolist() == seed_matrix["point"].tolist()
    assert fp["fault_yaml"].tolist() == seed_matrix["fault_yaml"].tolist()


# --------------------------------------------------------------------------------------------
# Sweeps and parameters


def test_sweep_equal_serial_process_pool_and_dask(seed_sc) -> None:
    distributed = pytest.importorskip("distributed")
    kw = dict(param="network.loss", values=[0.0, 0.1, 0.3], replications=3, seed=5, sagas=4)
    serial = ss.sweep(seed_sc, executor="serial", **kw)
    assert len(serial) == 3 * 3 * 2
    with ProcessPoolExecutor(2) as pool:
        pooled = ss.sweep(seed_sc, executor=pool, **kw)
    pd.testing.assert_frame_equal(serial, pooled)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dasked = ss.sweep(seed_sc, executor=client.get_executor(), **kw)
    pd.testing.assert_frame_equal(serial, dasked)
    # More loss costs time, not sagas: every safeguard is on, so lost messages are sent again
    # (the coordinator's retries, the outbox relay, the broker's redelivery).
    assert (serial["completed"] == 1.0).all()
    latency = serial.groupby("value")["latency_mean"].mean()
    assert latency[0.0] < latency[0.1] < latency[0.3]
    # Replication r has the same seed at every value and in every style.
    assert serial.groupby("replication")["seed"].nunique().eq(1).all()


def test_sweep_nested_path_changes_the_parameter(seed_sc) -> None:
    df = ss.sweep(seed_sc, "steps[2].duration.mean", [0.01, 1.0], replications=2, sagas=2)
    lat = df.groupby("value")["latency_mean"].mean()
    assert lat[1.0] > lat[0.01] + 0.5
    summary = ss.summarize_sweep(df, "latency_mean")
    assert list(summary.columns) == ["value", "style", "mean", "low", "high", "n"]
    assert (summary["low"] <= summary["mean"]).all() and (summary["mean"] <= summary["high"]).all()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("network.los", 0.1, "network.los"),
        ("steps[9].duration.mean", 0.1, "steps[9]"),
        ("network.loss", 1.5, "network.loss"),
        ("steps[1].duration.sd", -1, "steps[1].duration.sd"),
        ("policy..timeout", 1, "policy..timeout"),
    ],
)
def test_bad_parameter_is_a_clear_scenario_error(seed_sc, path, value, where) -> None:
    with pytest.raises(ss.ScenarioError) as err:
        ss.sweep(seed_sc, path, [value], replications=1)
    assert any(where in p.path or where in str(p) for p in err.value.problems)


def test_unknown_path_suggests_the_closest(seed_sc) -> None:
    with pytest.raises(ss.ScenarioError, match=r"did you mean .network\.loss."):
        ss.set_param(seed_sc, "network.los", 0.1)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(loss=st.floats(min_value=0, max_value=0.99), timeout=st.floats(min_value=0.01, max_value=10))
def test_set_param_round_trips(seed_sc, loss: float, timeout: float) -> None:
    sc = ss.set_param(ss.set_param(seed_sc, "network.loss", loss), "policy.timeout", timeout)
    assert get_param(sc, "network.loss") == loss
    assert get_param(sc, "policy.timeout") == timeout
    assert seed_sc.network.loss == 0.0  # the original is untouched
    assert set(param_paths(sc)) == set(param_paths(seed_sc))


# --------------------------------------------------------------------------------------------
# Monte Carlo


RATES = dict(step_failure=0.05, crash=0.01, coordinator_crash=0.01, loss=0.02, duplication=0.02)


def _frames(mc: ss.MonteCarlo) -> list[pd.DataFrame]:
    return [mc.outcomes, mc.latency, mc.ecdf, mc.per_saga, mc.violations, mc.paired]


def test_monte_carlo_is_deterministic_for_a_seed(seed_sc) -> None:
    a = ss.monte_carlo(seed_sc, 1200, rates=RATES, seed=11, chunk=500, executor="serial")
    b = ss.monte_carlo(seed_sc, 1200, rates=RATES, seed=11, chunk=500, executor="serial")
    for x, y in zip(_frames(a), _frames(b)):
        pd.testing.assert_frame_equal(x, y)
    with ProcessPoolExecutor(2) as pool:
        c = ss.monte_carlo(seed_sc, 1200, rates=RATES, seed=11, chunk=500, executor=pool)
    for x, y in zip(_frames(a), _frames(c)):
        pd.testing.assert_frame_equal(x, y)
    d = ss.monte_carlo(seed_sc, 1200, rates=RATES, seed=12, chunk=500, executor="serial")
    assert not a.outcomes["count"].equals(d.outcomes["count"])


def test_monte_carlo_aggregates_match_the_kept_traces(seed_sc) -> None:
    seen: list[tuple[int, int]] = []
    mc = ss.monte_carlo(
        seed_sc,
        700,
        rates=RATES,
        seed=4,
        chunk=300,
        keep_traces=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(300, 700), (600, 700), (700, 700)]
    sagas = mc.sagas
    assert len(sagas) == 2 * 700
    for style in ss.STYLES:
        mine = sagas[sagas["style"] == style]
        counts = mine["outcome"].value_counts()
        oc = mc.outcomes[mc.outcomes["style"] == style].set_index("outcome")
        for o in ss.OUTCOMES:
            assert oc.loc[o, "count"] == counts.get(o, 0)
            assert oc.loc[o, "ci_low"] <= oc.loc[o, "share"] <= oc.loc[o, "ci_high"]
        ps = mc.per_saga.set_index("style").loc[style]
        assert ps["messages"] == pytest.approx(mine["messages"].mean())
        lat = mc.latency.set_index("style").loc[style]
        assert lat["mean"] == pytest.approx(mine["latency"].mean())
        assert lat["p50"] == pytest.approx(mine["latency"].median(), rel=0.03)
        ecdf = mc.ecdf[mc.ecdf["style"] == style]
        assert ecdf["ecdf"].is_monotonic_increasing and ecdf["ecdf"].iloc[-1] == 1.0
    # Common random numbers: saga by saga, both styles ran under the same draws.
    assert int(mc.paired.to_numpy().sum()) == 700
    assert ss.monte_carlo(seed_sc, 50, seed=4).runs == []  # nothing kept unless asked


def test_monte_carlo_without_faults_completes_everything(seed_sc) -> None:
    none = dict(step_failure=0, crash=0, coordinator_crash=0, loss=0, duplication=0)
    mc = ss.monte_carlo(seed_sc, 400, rates=none, seed=1)
    oc = mc.outcomes.set_index(["style", "outcome"])
    for style in ss.STYLES:
        assert oc.loc[(style, "completed"), "count"] == 400


def test_monte_carlo_bad_rates_are_clear(seed_sc) -> None:
    with pytest.raises(ss.ScenarioError, match="loss"):
        ss.monte_carlo(seed_sc, 10, rates={"loss": 2})
    with pytest.raises(ss.ScenarioError, match="unknown rate"):
        ss.monte_carlo(seed_sc, 10, rates={"los": 0.1})
    with pytest.raises(ss.ScenarioError, match="executor"):
        ss.monte_carlo(seed_sc, 10, executor="threads")


@given(k=st.integers(0, 10_000), extra=st.integers(0, 10_000))
def test_wilson_interval_contains_the_share(k: int, extra: int) -> None:
    n = k + extra
    lo, hi = wilson(k, n)
    if n == 0:
        assert math.isnan(lo) and math.isnan(hi)
    else:
        assert 0.0 <= lo <= k / n <= hi <= 1.0


@given(base=st.integers(0, 2**64), keys=st.lists(st.integers(0, 2**32), max_size=3))
def test_derived_seeds_are_stable_and_valid(base: int, keys: list[int]) -> None:
    s = derive_seed(base, *keys)
    assert s == derive_seed(base, *keys)
    assert 0 <= s < 2**63
    assert derive_seed(base, *keys, 0) != derive_seed(base, *keys, 1)


# --------------------------------------------------------------------------------------------
# Find and shrink


def _breaks(sc: ss.Scenario, style: str, faults: list, seed: int) -> bool:
    return bool(ss.simulate(sc, style, faults=faults, seed=seed).violations)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 1000),
    path=st.sampled_from(SCENARIOS),
    style=st.sampled_from(ss.STYLES),
)
def test_shrunk_plan_fails_and_is_minimal(seed: int, path: Path, style: str) -> None:
    sc = ss.load_scenario(path)
    found = ss.find_and_shrink(sc, style, seed=seed, tries=400)
    if found is None:  # nothing in 400 plans broke it: nothing to shrink
        return
    plan = list(found.faults)
    assert found.violations
    assert _breaks(sc, style, plan, seed)
    assert len(plan) <= len(found.found)
    for i in range(len(plan)):
        assert not _breaks(sc, style, plan[:i] + plan[i + 1 :], seed), (plan, i)
    # The YAML replays the same failure, alone or inside the scenario.
    run = ss.simulate(sc, style, faults=found.to_yaml(), seed=seed)
    assert [v.invariant for v in run.violations] == [v.invariant for v in found.violations]
    again = ss.parse_scenario(found.scenario_yaml())
    assert len(again.faults) == len(sc.faults) + len(plan)


def test_shrink_is_the_same_in_a_process_pool(seed_sc) -> None:
    serial = ss.find_and_shrink(seed_sc, "orchestration", seed=3, tries=200)
    assert serial is not None
    with ProcessPoolExecutor(2) as pool:
        pooled = ss.find_and_shrink(seed_sc, "orchestration", seed=3, tries=200, executor=pool)
    assert pooled is not None
    assert (pooled.faults, pooled.tries) == (serial.faults, serial.tries)


def test_without_the_outbox_a_lost_result_event_stalls_the_choreography(seed_sc) -> None:
    bare = ss.fault_matrix(cw.variant(seed_sc, policy={"outbox": False}), seed=3)
    cell = bare.set_index(["point", "style"])
    assert cell.loc[("create_user/drop_reply", "choreography"), "outcome"] == "stalled"
    assert cell.loc[("create_user/drop_reply", "orchestration"), "outcome"] == "completed"


def test_shrink_targets_an_outcome(seed_sc) -> None:
    bare = cw.variant(seed_sc, policy={"outbox": False})  # with it, nothing stalls here
    found = ss.find_and_shrink(bare, "choreography", seed=1, tries=300, outcome="stalled")
    assert found is not None
    assert (found.run.sagas["outcome"] == "stalled").any()
    with pytest.raises(ss.ScenarioError, match="invariant"):
        ss.find_and_shrink(seed_sc, invariant="no_such_thing")


# --------------------------------------------------------------------------------------------
# CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_experiments.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_matrix_json_shape(capsys, seed_sc) -> None:
    code, out, _ = run_cli(capsys, "matrix", SEED_FILE, "--json", "--seed", "3")
    assert code == 0
    data = json.loads(out)
    rows = data["rows"]
    assert len(rows) == 2 * expected_points(seed_sc)
    for r in rows:
        assert {"fault", "style", "outcome", "violations", "latency", "messages"} <= set(r)
        assert isinstance(r["violations"], list) and r["outcome"] in ss.OUTCOMES
        assert r["latency"] is None or isinstance(r["latency"], float)


def test_cli_text_verbs(capsys) -> None:
    code, out, _ = run_cli(capsys, "matrix", SEED_FILE)
    assert code == 0 and "create_user/drop_reply" in out
    code, out, _ = run_cli(
        capsys,
        "sweep",
        SEED_FILE,
        "--param",
        "network.loss",
        "--values",
        "0,0.2",
        "--replications",
        "2",
        "--sagas",
        "3",
    )
    assert code == 0 and "0.2" in out
    code, out, _ = run_cli(capsys, "montecarlo", SEED_FILE, "-n", "200", "--rate", "loss=0.05")
    assert code == 0 and "Wilson" in out
    code, out, _ = run_cli(capsys, "shrink", SEED_FILE, "--seed", "3", "--tries", "200")
    assert code == 0
    plan = ss.parse_faults(out, ss.load_scenario(SEED_FILE))
    assert plan


def test_cli_json_verbs(capsys) -> None:
    code, out, _ = run_cli(
        capsys,
        "sweep",
        SEED_FILE,
        "--param",
        "policy.timeout",
        "--values",
        "0.2:0.6:0.2",
        "--replications",
        "2",
        "--sagas",
        "2",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert sorted({r["value"] for r in data["rows"]}) == [0.2, 0.4, 0.6]
    code, out, _ = run_cli(capsys, "montecarlo", SEED_FILE, "-n", "100", "--json")
    data = json.loads(out)
    assert code == 0 and set(data["styles"]) == set(ss.STYLES)
    code, out, _ = run_cli(capsys, "shrink", SEED_FILE, "--seed", "3", "--tries", "200", "--json")
    data = json.loads(out)
    assert code == 0 and data["found"] and data["violations"]


@pytest.mark.parametrize(
    "argv",
    [
        ["matrix", "no/such/file.yaml"],
        ["sweep", SEED_FILE, "--param", "network.los", "--values", "0.1"],
        ["sweep", SEED_FILE, "--param", "network.loss", "--values", "7"],
        ["sweep", SEED_FILE, "--param", "network.loss", "--values", "0.1", "--metric", "x"],
        ["montecarlo", SEED_FILE, "-n", "10", "--rate", "los=0.1"],
        ["montecarlo", SEED_FILE, "-n", "10", "--rate", "loss"],
    ],
)
def test_cli_bad_input_exits_2_with_one_message(capsys, argv) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert out == ""


def test_cli_argument_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_experiments.main(["matrix", str(SEED_FILE), "--seed", "-1"])
    assert exc.value.code == 2


def test_cli_shrink_finds_nothing_exits_1(capsys) -> None:
    code, _, err = run_cli(capsys, "shrink", SEED_FILE, "--tries", "1", "--seed", "0")
    assert code == 1 and "no plan" in err


def test_register_adds_the_verbs_to_any_parser() -> None:
    parser = argparse.ArgumentParser()
    cli_experiments.register(parser.add_subparsers(dest="command"))
    for verb in ("matrix", "sweep", "montecarlo", "shrink"):
        args = parser.parse_args(
            [verb, "f.yaml"] + (["--param", "x", "--values", "1"] if verb == "sweep" else [])
        )
        assert callable(args.func)


# --------------------------------------------------------------------------------------------
# Figures


def test_figures_build_from_the_frames(seed_sc, seed_matrix) -> None:
    from saga_sim.viz import experiments as vx

    fig = vx.matrix_figure(seed_matrix)
    assert fig.data[0].z.shape == (expected_points(seed_sc), 2)
    mc = ss.monte_carlo(seed_sc, 300, rates=RATES, seed=2)
    assert len(vx.outcome_shares_figure(mc.outcomes).data) == 2
    assert len(vx.latency_ecdf_figure(mc.ecdf).data) == 2
    assert len(vx.paired_outcomes_figure(mc.paired).data) == 1
    sw = ss.sweep(seed_sc, "network.loss", [0, 0.2], replications=2, sagas=2)
    assert len(vx.sweep_figure(sw, "completed").data) == 4  # a band and a line per style


def test_cli_scheduler_runs_on_a_dask_cluster(capsys) -> None:
    distributed = pytest.importorskip("distributed")
    argv = [
        "sweep",
        SEED_FILE,
        "--param",
        "network.loss",
        "--values",
        "0,0.3",
        "--replications",
        "2",
        "--sagas",
        "3",
        "--json",
    ]
    code, serial, _ = run_cli(capsys, *argv)
    assert code == 0
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"
    ) as cluster:
        code, dasked, _ = run_cli(capsys, *argv, "--scheduler", cluster.scheduler_address)
    assert code == 0
    assert json.loads(dasked) == json.loads(serial)

"""`clm monitor` on a trained workspace: at the date a champion was judged on, its drift
is nil; a drift planted in the data it reads is flagged (exit code 4) and named; figures
go to MLflow and the page is written."""
from __future__ import annotations

import pandas as pd
import pytest

from features.groups import GROUPS
from features.snapshots import snapshot_path
from pipelines import monitor as mon
from tests.clirun import invoke
from training import drift, registry


def _test_cutoff(ws, model: str) -> pd.Timestamp:  # type: ignore[no-untyped-def]
    client = registry.connect(ws)
    version = registry.alias_version(client, model, registry.CHAMPION)
    run = client.get_run(client.get_model_version(registry.registered_name(model), version).run_id)
    return pd.Timestamp(run.data.params["test_cutoff"], tz="UTC")


@pytest.mark.slow
def test_drift_is_nil_on_the_window_the_champion_was_judged_on_and_a_planted_one_is_flagged(trained_copy, tmp_path):
    ws = trained_copy
    cutoff = _test_cutoff(ws, "churn")
    report = mon.monitor(ws, cutoff, mon.Thresholds(periods=1))
    churn = report.drift[report.drift.model == "churn"]
    # the rows counted today are the rows the reference was recorded on
    assert len(churn) > 20 and churn.psi.max() < 1e-6, churn.head()
    assert not churn.flagged.any()
    # A champion trained before references were recorded gets one from the snapshot of its
    # test cutoff: the same distributions as the one recorded at training.
    champion = next(c for c in mon.load_champions(registry.connect(ws), ws, True)[0] if c.model == "churn")
    computed = drift.model_reference(champion.trained, mon.reference_rows(ws, cutoff, True))
    for name, recorded in champion.reference["features"].items():
        assert computed["features"][name]["shares"] == pytest.approx(recorded["shares"], abs=1e-12), name

    # Plant: the churn champion's most important feature (tenure for a scikit-learn baseline,
    # which has no importance: every feature's drift flags) tripled in the snapshot read.
    feature = next(iter(champion.reference["importance"] or {"tenure_days": 1.0}))
    group = next(g for g in GROUPS if feature in [f.name for f in g.features])
    path = snapshot_path(ws, group, cutoff)
    frame = pd.read_parquet(path)
    frame[feature] = frame[feature] * 3 + 10
    frame.to_parquet(path, index=False)

    page, limits = tmp_path / "monitor.html", tmp_path / "limits.yaml"
    limits.write_text("periods: 1\n")
    outcome = invoke("monitor", "--as-of", f"{cutoff:%Y-%m-%d}", "--html", str(page), "--thresholds", str(limits),
                     "-w", str(ws.root))
    assert outcome.exit_code == mon.FLAG_EXIT_CODE, outcome.output
    assert f"feature {feature}: PSI" in outcome.output
    text = page.read_text()
    assert all(f'id="{s}"' in text for s in ("flags", "drift", "performance", "policy"))
    assert "data:image/png;base64," in text and "http" not in text.replace("http://www.w3.org", "")
    client = registry.connect(ws)
    runs = client.search_runs([client.get_experiment_by_name("clm-monitor").experiment_id])
    assert runs[0].data.metrics["flags"] >= 1 and runs[0].data.metrics["churn_feature_psi_max"] > 0.25


@pytest.mark.slow
def test_delivered_scores_are_judged_once_their_outcomes_matured(retrained):
    """`clm run` scored at the data's end (not matured); the retrain at 2025-09-01 scored
    then, and by the data's end its 90-day window has passed."""
    from tests.retraining import RETRAIN_AS_OF

    ws = retrained["ws"]
    report = mon.monitor(ws, ws.read_manifest().end, mon.Thresholds(periods=2))
    matured = report.performance.set_index(["scored_at", "model"])
    assert set(matured.index.get_level_values(0)) == {RETRAIN_AS_OF}
    churn = matured.loc[(RETRAIN_AS_OF, "churn")]
    delivered = pd.read_parquet(ws.root / "scores" / f"{RETRAIN_AS_OF}.parquet")
    assert churn.customers == delivered.churn_probability.notna().sum()
    assert 0.55 < churn.roc_auc <= 1 and 0 <= churn.ece < 0.2
    assert len(report.policy) == 2 and report.policy.decisions.min() > 0
    assert report.uplift_deciles.decile.tolist() == list(range(1, 11))
    assert report.uplift_deciles.treated.sum() + report.uplift_deciles.control.sum() == report.policy.decisions.iloc[-1]


def test_a_bad_thresholds_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("feature_psi: -1\nsurprise: 3\n")
    outcome = invoke("monitor", "--thresholds", str(bad), "-w", str(tmp_path / "ws"))
    assert outcome.exit_code not in (0, 4)
    assert "feature_psi" in outcome.output and "surprise" in outcome.output

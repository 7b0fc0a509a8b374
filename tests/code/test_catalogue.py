"""The action catalogue: the shipped default, and errors that name the entry and field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clm.domain import ACTION_CATALOGUE, ALL_ACTIONS, CHANNELS, Action
from clm.errors import ClmError
from decisions.catalogue import DEFAULT_CATALOGUE, load_catalogue
from simulator.params import SimulationParams


def test_the_default_catalogue_and_the_simulator_do_not_drift():
    catalogue = load_catalogue()
    assert [a.id for a in catalogue.actions] == list(ALL_ACTIONS)  # one list of ids, same order
    for action, spec in ACTION_CATALOGUE.items():  # what the simulator's logged policy sends
        entry = catalogue.entry(action)
        assert (entry.channel, entry.description) == (spec.channel, spec.description)
    params = SimulationParams()
    discount = catalogue.entry(Action.RETENTION_OFFER).discount
    assert (discount.share, discount.bills) == (params.retention_discount, params.retention_discount_bills)
    assert {a.channel for a in catalogue.contact_actions} <= set(CHANNELS)


def test_costs_include_the_discount_granted():
    catalogue = load_catalogue()
    # 20% off three bills of 50 = 30, plus the 2.0 of sending it.
    assert catalogue.entry(Action.RETENTION_OFFER).cost(50.0) == pytest.approx(32.0)
    assert catalogue.entry(Action.SUCCESS_CALL).cost(50.0) == pytest.approx(40.0)
    assert catalogue.entry(Action.NONE).cost(50.0) == 0.0


def edited(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(DEFAULT_CATALOGUE.read_text())
    change(raw)
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda r: r["actions"][2].update(unit_cost=-5), "actions[2] (success_call).unit_cost: Input should be greater"),
    (lambda r: r["actions"][1].update(channel="fax"), "actions[1] (retention_offer).channel: Input should be 'email'"),
    (lambda r: r["actions"][1].update(id="10% off"), "actions[1] (10% off).id: String should match pattern"),
    (lambda r: r["actions"][4]["eligibility"].update(stages=["happy"]), "actions[4] (upgrade_offer).eligibility.stages[0]"),
    (lambda r: r["actions"][3]["eligibility"].update(tenure_days={"min": 90, "max": 10}),
     "actions[3] (onboarding_nudge).eligibility.tenure_days: Value error, min 90.0 is above max 10.0"),
    (lambda r: r["actions"][1].update(discount={"share": 1.5, "bills": 3}), "actions[1] (retention_offer).discount.share"),
    (lambda r: r["actions"][2].update(weight=0), "actions[2] (success_call).weight: Input should be greater than 0"),
    (lambda r: r["actions"][2].update(colour="red"), "actions[2] (success_call).colour: Extra inputs are not permitted"),
    (lambda r: r["actions"][2].pop("cooldown_days"), "actions[2] (success_call).cooldown_days: Field required"),
    (lambda r: r["actions"].pop(0), "the action 'none' (do nothing) must be in the catalogue"),
    (lambda r: r["actions"].append(dict(r["actions"][1])), "action(s) retention_offer appear more than once"),
    (lambda r: r["contact_policy"].update(window_days=0), "contact_policy.window_days: Input should be greater"),
    (lambda r: r["actions"][1].update(channel="none"), "the channel is 'none' for the action none, and only for it"),
])
def test_a_broken_catalogue_names_the_entry_and_the_field(tmp_path, change, message):
    path = edited(tmp_path, change)
    with pytest.raises(ClmError) as err:
        load_catalogue(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_not_yaml_or_missing_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("actions: [\n  - id: none\n")
    with pytest.raises(ClmError, match=r"bad.yaml is not valid YAML at line \d+"):
        load_catalogue(bad)
    with pytest.raises(ClmError, match="not found: pass --catalogue"):
        load_catalogue(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- id: none\n")
    with pytest.raises(ClmError, match="must be a mapping"):
        load_catalogue(listing)


def test_a_business_names_its_own_actions(tmp_path):
    def own(raw: dict) -> None:
        raw["actions"][1].update(id="voucher_10", description="10% off the next order")
        raw["actions"][2].update(id="spring-email")
    catalogue = load_catalogue(edited(tmp_path, own))
    assert catalogue.contact_ids[:2] == ["voucher_10", "spring-email"]
    assert catalogue.entry("voucher_10").description == "10% off the next order"
    assert "none" not in catalogue.contact_ids

"""The ``tlp`` policy, tested with misp-ti's kit: hypothesis strategies for
MISP attributes and the engine fixture on the simulated MISP."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from misp_ti_example import tlp_expiry

from misp_ti.config import build_config
from misp_ti.errors import ConfigError
from misp_ti.expiry import reference_time
from misp_ti.testing import strategies as ms

#: misp-ti's attribute strategies draw whole MISP records (several ms each):
#: no per-example deadline and no too-slow check, so a busy CI box does not
#: fail a correct policy.
KIT_SPEED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

CONFIG = build_config({"expiry": {"policy": "tlp"}, "plugin": {"tlp_expiry": {"red": "3d"}}})


def ctx(now):
    return SimpleNamespace(config=CONFIG, now=now, policy="tlp")


@settings(max_examples=30, **KIT_SPEED)
@given(ms.attributes(decay=False), ms.tags("tlp"), st.integers(0, 200 * 86400))
def test_validity_follows_the_tlp_marking(attribute, tlp_tag, age):
    attribute["Tag"] = [t for t in attribute.get("Tag", []) if not t["name"].startswith("tlp:")] + [
        tlp_tag
    ]
    reference = reference_time(attribute, {})
    now = reference + timedelta(seconds=age)
    expiry = tlp_expiry.compute_expiry("threat_attributes", attribute, {}, ctx(now))
    level = tlp_tag["name"][4:].replace("+strict", "")
    expected = {"red": timedelta(days=3), "amber": timedelta(days=30)}.get(
        level, timedelta(days=90)
    )
    assert expiry.decayed_at == reference + expected
    assert expiry.decayed == (expiry.decayed_at < now)


@settings(max_examples=20, **KIT_SPEED)
@given(ms.attributes(decay=True))
def test_the_decay_vote_wins(attribute):
    expiry = tlp_expiry.compute_expiry(
        "threat_attributes", attribute, {}, ctx(reference_time(attribute, {}))
    )
    votes = [s["decayed"] for s in attribute["decay_score"]]
    voted = 2 * sum(votes) >= len(votes)
    assert (expiry.reason == "decay-vote") == voted
    assert expiry.decayed or not voted


@settings(max_examples=20, **KIT_SPEED)
@given(ms.attributes(decay=None, deleted=True), ms.tags("tlp"))
def test_a_soft_deleted_attribute_expires_at_once(attribute, tlp_tag):
    # misp-ti's shared rule (expiry.expire_deleted, on by default), before the vote and the marking
    attribute["Tag"] = [*attribute.get("Tag", []), tlp_tag]
    now = reference_time(attribute, {})
    expiry = tlp_expiry.compute_expiry("threat_attributes", attribute, {}, ctx(now))
    assert (expiry.decayed, expiry.decayed_at, expiry.reason) == (True, now, "deleted")
    kept = SimpleNamespace(
        config=build_config({"expiry": {"policy": "tlp", "expire_deleted": False}}), now=now, policy="tlp"
    )
    assert tlp_expiry.compute_expiry("threat_attributes", attribute, {}, kept).reason != "deleted"


def test_bad_durations_fail_at_start_naming_the_key(misp_make_engine, example_plugins):
    with pytest.raises(ConfigError, match=r"^plugin.tlp_expiry.red: bad value '3 days': expected a duration"):
        misp_make_engine(*example_plugins, overrides={"plugin": {"tlp_expiry": {"red": "3 days"}}})


def test_other_policies_are_not_answered():
    other = SimpleNamespace(config=CONFIG, now=None, policy="duration")
    assert tlp_expiry.compute_expiry("threat_attributes", {}, {}, other) is None


@pytest.mark.misp_data(shift_to_now=True)
def test_policy_in_a_full_cycle(misp_make_engine, example_plugins, misp_clock):
    engine = misp_make_engine(*example_plugins, overrides={"expiry": {"policy": "tlp"}})
    [result] = engine.run_once()
    assert result.completed and result.pipeline_errors == 0
    assert result.delivered["sqlite"] == result.documents > 1000

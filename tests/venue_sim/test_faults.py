"""``--faults`` schedule syntax."""

from __future__ import annotations

import pytest

from venue_sim.faults import FaultSpec, parse_faults


def test_parse_every_kind() -> None:
    spec = "close#2@20s,drop@10s,freeze:5s@30s,delay:0.5s/3s#1@1.5,malformed@250ms,refuse:2@40s,drop:3@1"
    got = parse_faults(spec)
    assert got == [
        FaultSpec(kind="malformed", at_s=0.25),
        FaultSpec(kind="drop", at_s=1.0, count=3),
        FaultSpec(kind="delay", at_s=1.5, conn_id=1, seconds=0.5, duration_s=3.0),
        FaultSpec(kind="drop", at_s=10.0),
        FaultSpec(kind="close", at_s=20.0, conn_id=2),
        FaultSpec(kind="freeze", at_s=30.0, seconds=5.0),
        FaultSpec(kind="refuse", at_s=40.0, seconds=2.0),
    ]


@pytest.mark.parametrize("bad", ["explode@1s", "freeze@1s", "drop", "close:3/4@1", "refuse:1#2@1", "drop@x"])
def test_bad_items_are_rejected_with_the_item_named(bad: str) -> None:
    with pytest.raises(ValueError, match="bad fault"):
        parse_faults(f"drop@1s,{bad}")


def test_redeliver_and_badnumber_items() -> None:
    got = parse_faults("redeliver#2@5s,badnumber@6s,badnumber:digits@7s,redeliver:3@8s")
    assert got == [
        FaultSpec(kind="redeliver", at_s=5.0, conn_id=2),
        FaultSpec(kind="badnumber", at_s=6.0, variant="exp"),
        FaultSpec(kind="badnumber", at_s=7.0, variant="digits"),
        FaultSpec(kind="redeliver", at_s=8.0, count=3),
    ]


@pytest.mark.parametrize("bad", ["badnumber:huge@1", "badnumber#1@1", "redeliver:0@1", "drop:x@1", "freeze:abc@1"])
def test_bad_new_items_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="bad fault"):
        parse_faults(bad)


def test_fault_spec_checks_its_fields() -> None:
    with pytest.raises(ValueError):
        FaultSpec(kind="badnumber", variant="huge")
    with pytest.raises(ValueError):
        FaultSpec(kind="badnumber", conn_id=1)

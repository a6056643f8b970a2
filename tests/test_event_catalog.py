"""docs/events.md is generated from the code; this fails when someone forgot to regenerate it."""

from shared.events.contracts import CATALOG
from valuechain import event_catalog


def test_the_committed_event_catalog_is_current():
    committed = event_catalog.DOC.read_text()
    assert committed == event_catalog.render(), "run: .venv/bin/python -m valuechain.event_catalog"


def test_every_subject_follows_the_naming_rule_and_has_a_producer():
    for subject, contract in CATALOG.items():
        parts = subject.split(".")
        assert (parts[0] == "crm" and parts[1] == contract.producer) or parts[1] == "dlq", subject
        # crm.<service>.<aggregate>.<event>, or a part of an aggregate: crm.engage.community.post.created
    assert len(parts) in (3, 4, 5), subject

"""engage's surveys against a real nats-server and real databases: rules after touchpoints,
the customer's signed link (one answer), staff responses, the checks naming each bad field,
the customer's feedback, erasure, and the report's figures worked out by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.engage.consent import rules
from services.engage.conversations.models import Message
from services.engage.feedback import repository
from services.engage.feedback.models import SurveyInvitation, SurveyResponse
from shared.db.uow import transaction
from shared.events.customer_profiles import kinds_text
from tests.services.test_engage import catalog_event, create_customer, publish, start
from tests.services.test_lifecycle import _read_stream
from tests.support import wait_until

QUESTIONS = [
    {"id": "nps", "type": "nps", "text": "How likely are you to recommend us?", "required": True},
    {"id": "sat", "type": "csat", "text": "How satisfied were you?"},
    {
        "id": "vs",
        "type": "attribute_rating",
        "text": "Rate us and others",
        "attributes": ["quality", "price"],
        "subjects": ["us", "Acme"],
    },
    {"id": "effort", "type": "effort", "text": "How much effort did it take?"},
    {"id": "feel", "type": "emotion", "text": "How did you feel?"},
    {"id": "why", "type": "text", "text": "Why?"},
]


async def _survey(engage, **changes) -> dict:
    body = {"name": "After the first purchase", "questions": QUESTIONS, **changes}
    response = await engage.client.post("/v1/surveys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _contact_known(engage, customer_id):
    from services.engage.contacts import service as contacts

    async with engage.runtime.db.reader() as session:
        return await contacts.contact_of(session, customer_id) is not None


async def _invitations(engage, customer_id) -> list[SurveyInvitation]:
    async with engage.runtime.db.reader() as session:
        query = select(SurveyInvitation).where(SurveyInvitation.customer_id == customer_id)
        return list((await session.execute(query)).scalars())


async def _invitation_token(engage, customer_id) -> tuple[SurveyInvitation, str]:
    [invitation] = await wait_until(lambda: _invitations(engage, customer_id), what="the survey invitation")
    async with engage.runtime.db.reader() as session:
        message = await session.get(Message, invitation.message_id)
    # engage's sender may have sent it already.
    assert message.status in ("queued", "sent") and message.purpose == "service" and message.source_kind == "survey"
    assert message.to_address.endswith("@example.com")
    token = re.search(r"/v1/feedback/(\S+)", message.body).group(1)
    return invitation, token


async def _profile(suite, engage, customer_id, *, segment, kinds, stage):
    now = datetime.now(UTC)
    scored = catalog_event(
        "identify",
        "crm.identify.customer.scored",
        {
            "customer_id": customer_id,
            "model_version": 1,
            "segment": segment,
            "kinds": kinds,
            "predicted_clv": 100.0,
            "probability_alive": 0.9,
            "expected_purchases": 1.0,
            "clv_band": "high",
            "scored_at": now,
        },
        customer_id,
    )
    staged = catalog_event(
        "lifecycle",
        "crm.lifecycle.stage.changed",
        {"customer_id": customer_id, "from_stage": None, "to_stage": stage, "at": now, "cause_event_id": "x"},
        customer_id,
    )
    for event in (scored, staged):
        await publish(suite.nats.url, event, event.id)

    async def profiled():
        from services.engage.models import profiles

        async with engage.runtime.db.reader() as session:
            profile = await profiles.get(session, customer_id)
        return profile and profile["segment"] == segment and profile["stage"] == stage

    await wait_until(profiled, what="the customer's profile")


async def test_a_first_purchase_sends_the_survey_and_its_link_takes_one_answer(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    ada = await create_customer(identify, email="ada@example.com", name="Ada")
    await wait_until(lambda: _contact_known(engage, ada["id"]), what="engage knows Ada")
    await _profile(suite, engage, ada["id"], segment="champions", kinds=["benchmark", "advocate"], stage="new")
    survey = await _survey(engage, triggers=["crm.identify.transaction.recorded"])
    assert survey["triggers"] == ["crm.identify.transaction.recorded"] and survey["active"] is True

    bought = await identify.client.post(
        "/v1/transactions",
        json={
            "customer_id": ada["id"],
            "amount": "20.00",
            "currency": "USD",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    assert bought.status_code == 201, bought.text
    invitation, token = await _invitation_token(engage, ada["id"])
    assert invitation.touchpoint_type == "crm.identify.transaction.recorded" and invitation.channel is None

    form = await engage.client.get(f"/v1/feedback/{token}")
    assert form.status_code == 200, form.text
    assert [q["id"] for q in form.json()["questions"]] == [q["id"] for q in QUESTIONS]
    assert form.json()["answered"] is False and "delighted" in form.json()["emotions"]

    answers = {
        "nps": 9,
        "sat": 4,
        "vs": [
            {"attribute": "quality", "subject": "us", "score": 8},
            {"attribute": "quality", "subject": "Acme", "score": 6},
        ],
        "effort": 2,
        "feel": "pleased",
        "why": "Quick delivery,\nfriendly staff",
    }
    tampered = await engage.client.post(f"/v1/feedback/{token[:-2]}xx", json={"answers": answers})
    assert tampered.status_code == 400 and tampered.json()["error"] == "bad_token"
    answered = await engage.client.post(f"/v1/feedback/{token}", json={"answers": answers})
    assert answered.status_code == 201, answered.text
    assert set(answered.json()) == {"response_id", "received_at"}
    again = await engage.client.post(f"/v1/feedback/{token}", json={"answers": {"nps": 1}})
    assert again.status_code == 409 and again.json()["error"] == "already_answered"
    assert (await engage.client.get(f"/v1/feedback/{token}")).json()["answered"] is True

    [event] = await _read_stream(suite.nats.url, "crm.engage.feedback.received", 1, settle=True)
    data = event["data"]
    assert data["response_id"] == answered.json()["response_id"] and data["survey_id"] == survey["id"]
    assert (data["nps"], data["csat"], data["ces"], data["effort"], data["emotion"]) == (9, 4, None, 2, "pleased")
    assert (data["stage"], data["segment"], data["channel"]) == ("new", "champions", None)
    assert data["touchpoint_event_id"] == invitation.touchpoint_event_id
    assert data["touchpoint_type"] == "crm.identify.transaction.recorded"
    assert data["ratings"] == answers["vs"] and data["comment"] == "Quick delivery,\nfriendly staff"

    feedback = (await engage.client.get(f"/v1/customers/{ada['id']}/feedback")).json()
    [response] = feedback["items"]
    assert response["source"] == "link" and response["kinds"] == ["advocate", "benchmark"]
    assert response["texts"] == {"why": "Quick delivery,\nfriendly staff"} and len(response["ratings"]) == 2

    # Within the quiet period nothing more is sent, by a rule or on demand.
    send = await engage.client.post(f"/v1/surveys/{survey['id']}/send", json={"customer_id": ada["id"]})
    assert send.status_code == 409 and send.json()["error"] == "quiet_period", send.text

    # The export shows the answers; an erasure removes the free text and keeps the scores.
    exported = (await engage.client.get(f"/internal/customers/{ada['id']}/personal-data")).json()
    tables = {t["table"]: t for t in exported["tables"]}
    assert tables["survey_responses"]["personal"] == {"texts": "free_text"}
    assert "friendly staff" in tables["survey_responses"]["rows"][0]["texts"]
    assert len(tables["survey_ratings"]["rows"]) == 2
    erased = await identify.client.post(f"/v1/customers/{ada['id']}/erasure", json={})
    assert erased.status_code in (201, 202), erased.text

    async def texts_erased():
        page = (await engage.client.get(f"/v1/customers/{ada['id']}/feedback")).json()
        return page["items"] and page["items"][0]["texts"] is None and page["items"][0]

    after = await wait_until(texts_erased, what="the free text erased")
    assert after["nps"] == 9 and len(after["ratings"]) == 2


async def test_rules_follow_closed_conversations_and_solved_tickets_and_respect_research_consent(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    names = ("old", "ticket", "talk", "withdrawn", "demand")
    people = {n: await create_customer(identify, email=f"{n}@example.com", name=n) for n in names}
    for person in people.values():
        await wait_until(lambda p=person: _contact_known(engage, p["id"]), what="engage knows the customer")
    survey = await _survey(engage, triggers=["crm.lifecycle.ticket.solved", "crm.engage.conversation.closed"])
    now = datetime.now(UTC)
    async with transaction(engage.runtime.db.writer) as session:
        await rules.record(
            session,
            customer_id=people["withdrawn"]["id"],
            purpose="research",
            channel="email",
            granted=False,
            legal_basis="consent",
            source="api",
            notice_version=None,
            changed_at=now,
            now=now,
        )

    def solved(who, at):
        cid = people[who]["id"]
        data = {"ticket_id": f"t-{who}", "customer_id": cid, "channel": "phone", "solved_at": at}
        return catalog_event("lifecycle", "crm.lifecycle.ticket.solved", data, cid)

    closed = catalog_event(
        "engage",
        "crm.engage.conversation.closed",
        {
            "id": "conv",
            "customer_id": people["talk"]["id"],
            "channel": "chat",
            "resolution_seconds": 60.0,
            "closed_at": now,
        },
        people["talk"]["id"],
    )
    # An imported ticket solved long ago, and research consent withdrawn: no survey.
    for event in (solved("old", now - timedelta(days=30)), solved("withdrawn", now), solved("ticket", now), closed):
        await publish(suite.nats.url, event, event.id)

    [ticket] = await wait_until(lambda: _invitations(engage, people["ticket"]["id"]), what="the ticket's survey")
    [talk] = await wait_until(lambda: _invitations(engage, people["talk"]["id"]), what="the conversation's survey")
    assert (ticket.touchpoint_type, ticket.channel) == ("crm.lifecycle.ticket.solved", "phone")
    assert (talk.touchpoint_type, talk.channel, talk.touchpoint_event_id) == (
        "crm.engage.conversation.closed",
        "chat",
        closed.id,
    )
    # The stream is read in order: the earlier events were handled, and sent nothing.
    assert await _invitations(engage, people["old"]["id"]) == []
    assert await _invitations(engage, people["withdrawn"]["id"]) == []

    refused = await engage.client.post(
        f"/v1/surveys/{survey['id']}/send", json={"customer_id": people["withdrawn"]["id"]}
    )
    assert refused.status_code == 409 and refused.json()["error"] == "no_consent"
    unknown = await engage.client.post(f"/v1/surveys/{survey['id']}/send", json={"customer_id": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"
    sent = await engage.client.post(f"/v1/surveys/{survey['id']}/send", json={"customer_id": people["demand"]["id"]})
    assert sent.status_code == 201, sent.text
    assert sent.json()["touchpoint_event_id"] is None and "/v1/feedback/" in sent.json()["link"]
    token = sent.json()["link"].rsplit("/", 1)[1]
    assert (await engage.client.get(f"/v1/feedback/{token}")).json()["survey_id"] == survey["id"]

    # A paused survey's rules send nothing.
    paused = await engage.client.patch(f"/v1/surveys/{survey['id']}", json={"active": False})
    assert paused.status_code == 200 and paused.json()["active"] is False


@pytest.fixture(scope="module")
async def refusing_engage(module_suite):
    """engage, started once for the refusals below (none writes a survey)."""

    return await start(module_suite, "engage")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"triggers": ["crm.identify.customer.created"]}, "body.triggers.0"),
        (
            {"questions": [{"id": "a", "type": "nps", "text": "?"}, {"id": "a", "type": "text", "text": "?"}]},
            "body.questions.1.id",
        ),
        (
            {"questions": [{"id": "a", "type": "nps", "text": "?"}, {"id": "b", "type": "nps", "text": "?"}]},
            "body.questions.1.type",
        ),
        (
            {"questions": [{"id": "a", "type": "attribute_rating", "text": "?", "subjects": ["us"]}]},
            "body.questions.0.attributes",
        ),
        ({"questions": [{"id": "a", "type": "csat", "text": "?", "subjects": ["us"]}]}, "body.questions.0.subjects"),
        ({"questions": [{"id": "a", "type": "stars", "text": "?"}]}, "body.questions.0.type"),
        ({"questions": [{"id": "a b", "type": "nps", "text": "?"}]}, "body.questions.0.id"),
        ({"questions": []}, "body.questions"),
        ({"colour": "red"}, "body.colour"),
    ],
)
async def test_a_bad_survey_is_refused_naming_the_field(refusing_engage, change, field):
    engage = refusing_engage
    response = await engage.client.post("/v1/surveys", json={"name": "S", "questions": QUESTIONS, **change})
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["detail"]], response.text
    assert (await engage.client.get("/v1/surveys")).json()["items"] == []


async def test_bad_answers_name_every_field_and_write_nothing(suite):
    identify = await start(suite, "identify")
    engage = await start(suite, "engage")
    bob = await create_customer(identify, email="bob@example.com", name="Bob")
    await wait_until(lambda: _contact_known(engage, bob["id"]), what="engage knows Bob")
    survey = await _survey(engage)
    bad = {
        "nps": 11,
        "sat": "5",
        "vs": [{"attribute": "speed", "subject": "Zed", "score": 0}],
        "feel": "meh",
        "why": "   ",
        "extra": 1,
    }
    response = await engage.client.post(
        f"/v1/surveys/{survey['id']}/responses", json={"customer_id": bob["id"], "answers": bad}
    )
    assert response.status_code == 422, response.text
    assert sorted(e["field"] for e in response.json()["detail"]) == [
        "body.answers.extra",
        "body.answers.feel",
        "body.answers.nps",
        "body.answers.sat",
        "body.answers.vs.0.attribute",
        "body.answers.vs.0.score",
        "body.answers.vs.0.subject",
        "body.answers.why",
    ]
    missing = await engage.client.post(
        f"/v1/surveys/{survey['id']}/responses", json={"customer_id": bob["id"], "answers": {"sat": 3}}
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "body.answers.nps"
    unknown = await engage.client.post(
        f"/v1/surveys/{survey['id']}/responses", json={"customer_id": "nobody", "answers": {"nps": 3}}
    )
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"
    assert (
        await engage.client.post("/v1/surveys/nope/responses", json={"customer_id": bob["id"], "answers": {}})
    ).status_code == 404
    assert (await engage.client.get(f"/v1/customers/{bob['id']}/feedback")).json()["items"] == []
    assert (await engage.client.get("/v1/customers/nobody/feedback")).status_code == 404

    recorded = await engage.client.post(
        f"/v1/surveys/{survey['id']}/responses",
        json={"customer_id": bob["id"], "answers": {"nps": 3}, "channel": "phone", "touchpoint_event_id": "e1"},
    )
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["source"], recorded.json()["channel"], recorded.json()["nps"]) == ("staff", "phone", 3)
    [event] = await _read_stream(suite.nats.url, "crm.engage.feedback.received", 1, settle=True)
    assert event["data"]["response_id"] == recorded.json()["id"]


# --- the report --------------------------------------------------------------------------

Z = 1.959963984540054  # the normal's 97.5% quantile
T2 = 4.302652729911275  # Student's t, 2 degrees of freedom, 97.5%


def _row(survey_id, n, *, segment, kinds, channel, month, nps=None, csat=None, ces=None):
    at = datetime.fromisoformat(f"{month}-10T12:00:00+00:00") + timedelta(minutes=n)
    return SurveyResponse(
        id=f"r{n:03d}",
        survey_id=survey_id,
        customer_id=f"c{n}",
        source="staff",
        channel=channel,
        stage="active",
        segment=segment,
        kinds=kinds_text(kinds),
        nps=nps,
        csat=csat,
        ces=ces,
        received_at=at,
        month=month,
    ), list(kinds) or [None]


async def test_the_report_gives_the_figures_worked_out_by_hand(suite):
    engage = await start(suite, "engage")
    survey = await _survey(engage)
    rows = [
        # champions: NPS 10, 9, 8, 6, 0 → 2 promoters, 1 passive, 2 detractors
        _row(
            survey["id"],
            1,
            segment="champions",
            kinds=["benchmark", "advocate"],
            channel="email",
            month="2026-01",
            nps=10,
        ),
        _row(survey["id"], 2, segment="champions", kinds=["benchmark"], channel="email", month="2026-01", nps=9),
        _row(survey["id"], 3, segment="champions", kinds=[], channel="chat", month="2026-02", nps=8),
        _row(survey["id"], 4, segment="champions", kinds=[], channel="chat", month="2026-02", nps=6),
        _row(survey["id"], 5, segment="champions", kinds=[], channel="chat", month="2026-02", nps=0),
        # loyal: NPS 10, 10, 10, 7 → 3 promoters, 1 passive
        _row(survey["id"], 6, segment="loyal", kinds=["advocate"], channel="phone", month="2026-02", nps=10),
        _row(survey["id"], 7, segment="loyal", kinds=[], channel="phone", month="2026-03", nps=10),
        _row(survey["id"], 8, segment="loyal", kinds=[], channel="phone", month="2026-03", nps=10),
        _row(survey["id"], 9, segment="loyal", kinds=[], channel="phone", month="2026-03", nps=7),
        # CSAT 5, 4, 3 (loyal) and 2 (no segment known); no NPS
        _row(survey["id"], 10, segment="loyal", kinds=["advocate"], channel="email", month="2026-03", csat=5),
        _row(survey["id"], 11, segment="loyal", kinds=[], channel="email", month="2026-03", csat=4),
        _row(survey["id"], 12, segment="loyal", kinds=[], channel="email", month="2026-03", csat=3),
        _row(survey["id"], 13, segment=None, kinds=[], channel=None, month="2026-03", csat=2),
    ]
    async with transaction(engage.runtime.db.writer) as session:
        for response, kinds in rows:
            await repository.add_response(session, response, [], kinds)

    async def report(**params):
        answer = await engage.client.get("/v1/feedback/report", params=params)
        assert answer.status_code == 200, answer.text
        return {cell["key"]: cell for cell in answer.json()["cells"]}

    by_segment = await report(metric="nps", by="segment")
    assert set(by_segment) == {"champions", "loyal"}
    champions, loyal = by_segment["champions"], by_segment["loyal"]
    # champions: p = d = 0.4, NPS 0; Var = (p + d - (p - d)²) / n = 0.8 / 5 = 0.16; se = 40 points
    assert (champions["promoters"], champions["passives"], champions["detractors"]) == (2, 1, 2)
    assert champions["responses"] == 5 and champions["score"] == pytest.approx(0.0)
    assert champions["low"] == pytest.approx(-Z * 40) and champions["high"] == pytest.approx(Z * 40)
    # loyal: p = 0.75, d = 0, NPS 75; Var = (0.75 - 0.5625) / 4 = 0.046875; the top is capped at 100
    se = 100 * 0.046875**0.5
    assert loyal["score"] == pytest.approx(75.0) and loyal["responses"] == 4
    assert loyal["low"] == pytest.approx(75 - Z * se) and loyal["high"] == 100.0

    # CSAT of loyal: 5, 4, 3 → mean 4, s² = 1, se = √(1/3), t(2) interval
    csat = await report(metric="csat", by="segment")
    assert csat["loyal"]["score"] == pytest.approx(4.0) and csat["loyal"]["responses"] == 3
    assert csat["loyal"]["low"] == pytest.approx(4 - T2 * (1 / 3) ** 0.5)
    assert csat["loyal"]["high"] == pytest.approx(4 + T2 * (1 / 3) ** 0.5)
    assert csat[None]["score"] == 2 and csat[None]["low"] is None and csat[None]["responses"] == 1

    # Kinds are many per customer: response 1 counts for both benchmark and advocate.
    kinds = await report(metric="nps", by="kind")
    assert {k: c["responses"] for k, c in kinds.items()} == {None: 6, "advocate": 2, "benchmark": 2}
    assert kinds["benchmark"]["score"] == pytest.approx(100.0) and kinds["benchmark"]["low"] is None
    # None: 8, 6, 0, 10, 10, 7 → 2 promoters, 2 passives, 2 detractors
    assert kinds[None]["score"] == pytest.approx(0.0)

    months = await report(metric="nps", by="month")
    assert {k: c["responses"] for k, c in months.items()} == {"2026-01": 2, "2026-02": 4, "2026-03": 3}
    channels = await report(metric="nps", by="channel")
    assert {k: c["responses"] for k, c in channels.items()} == {"chat": 3, "email": 2, "phone": 4}
    # The range: from (inclusive) to (exclusive), all in one cell without `by`.
    everything = await report(metric="nps", **{"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"})
    assert everything[None]["responses"] == 4 and everything[None]["score"] == pytest.approx(-25.0)
    assert (await report(metric="ces", by="stage")) == {}
    # One segment over time (the console's chart): loyal's NPS by month; by kind through the responses.
    loyal_months = await report(metric="nps", by="month", segment="loyal")
    assert {k: (c["responses"], c["score"]) for k, c in loyal_months.items()} == {
        "2026-02": (1, 100.0),
        "2026-03": (3, pytest.approx(200 / 3)),
    }
    champion_kinds = await report(metric="nps", by="kind", segment="champions")
    assert {k: c["responses"] for k, c in champion_kinds.items()} == {None: 3, "advocate": 1, "benchmark": 2}
    assert (await report(metric="csat", segment="loyal"))[None]["score"] == pytest.approx(4.0)
    answer = await engage.client.get("/v1/feedback/report", params={"metric": "nps", "segment": "loyal"})
    assert answer.json()["segment"] == "loyal"

    for params, field in (
        ({"metric": "joy"}, "query.metric"),
        ({"metric": "nps", "by": "colour"}, "query.by"),
        ({"metric": "nps", "from": "2026-01-01T00:00:00"}, "query.from"),
        ({"by": "segment"}, "query.metric"),
        ({"metric": "nps", "segment": "royals"}, "query.segment"),
    ):
        answer = await engage.client.get("/v1/feedback/report", params=params)
        assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == field, answer.text

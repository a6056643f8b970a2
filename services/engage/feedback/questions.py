"""Question types, their scales, and the checks of a survey's questions and of its answers.

| type | answer |
|---|---|
| nps | 0–10: how likely to recommend us (promoters 9–10, passives 7–8, detractors 0–6) |
| csat | 1–5: how satisfied |
| ces | 1–7: how easy it was (customer effort score; 7 = very easy) |
| effort | 1–5: experience data, how much effort the touchpoint took (1 = none, 5 = a lot) |
| emotion | experience data, how the customer felt: one of `EMOTIONS` |
| text | free text (personal data) |
| attribute_rating | `[{attribute, subject, score 1–10}]` for the question's attributes × subjects |

A survey asks each scored type (all but text and attribute_rating) at most once, so a
response has one NPS, one CSAT, ... and the reports read one column each.
Errors name the field: `body.questions.<i>.<field>` and `body.answers.<question id>`.
"""

from __future__ import annotations

from typing import Any

# How the customer felt, from worst to best (valence -2 to +2): small and fixed, so the
# answers of every survey add up.
EMOTIONS = ("angry", "frustrated", "neutral", "pleased", "delighted")

SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "effort": (1, 5)}
ONCE = (*SCALES, "emotion")
TYPES = (*ONCE, "text", "attribute_rating")
RATING_SCALE = (1, 10)
TEXT_MAX = 5000


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "value_error"}


def question_errors(questions: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What is wrong with a survey's questions beyond their shape (pydantic checked that)."""

    errors = []
    seen_ids: set[str] = set()
    seen_types: set[str] = set()
    for i, question in enumerate(questions):
        where = f"body.questions.{i}"
        if question["id"] in seen_ids:
            errors.append(_error(f"{where}.id", f"another question has the id {question['id']!r}"))
        seen_ids.add(question["id"])
        kind = question["type"]
        if kind in ONCE:
            if kind in seen_types:
                errors.append(_error(f"{where}.type", f"a survey asks {kind} at most once"))
            seen_types.add(kind)
        for name in ("attributes", "subjects"):
            listed = question.get(name)
            if kind == "attribute_rating" and not listed:
                errors.append(_error(f"{where}.{name}", f"an attribute_rating question needs its {name}"))
            elif kind != "attribute_rating" and listed is not None:
                errors.append(_error(f"{where}.{name}", f"only attribute_rating questions have {name}"))
            elif listed and len(set(listed)) != len(listed):
                errors.append(_error(f"{where}.{name}", f"{name} must not repeat"))
    return errors


def read_answers(
    questions: list[dict[str, Any]], answers: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The answers as a response stores them, and every error: `({"nps": 9, ..., "texts":
    {id: text}, "ratings": [(attribute, subject, score)]}, errors)`."""

    by_id = {q["id"]: q for q in questions}
    errors = [_error(f"body.answers.{qid}", "the survey has no such question") for qid in answers if qid not in by_id]
    result: dict[str, Any] = {"texts": {}, "ratings": []}
    for qid, question in by_id.items():
        where = f"body.answers.{qid}"
        if qid not in answers or answers[qid] is None:
            if question.get("required"):
                errors.append(_error(where, "this question needs an answer"))
            continue
        value, kind = answers[qid], question["type"]
        if kind in SCALES:
            low, high = SCALES[kind]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors.append(_error(where, f"a {kind} answer is a whole number from {low} to {high}"))
            else:
                result[kind] = value
        elif kind == "emotion":
            if value not in EMOTIONS:
                errors.append(_error(where, f"an emotion is one of {', '.join(EMOTIONS)}"))
            else:
                result["emotion"] = value
        elif kind == "text":
            text = value.strip() if isinstance(value, str) else None
            if not text or len(text) > TEXT_MAX:
                errors.append(_error(where, f"a text answer is text of 1 to {TEXT_MAX} characters"))
            else:
                result["texts"][qid] = text
        else:
            errors.extend(_ratings(where, question, value, result["ratings"]))
    if (
        not errors
        and not any(result.get(k) is not None for k in ONCE)
        and not result["texts"]
        and not result["ratings"]
    ):
        errors.append(_error("body.answers", "answer at least one question"))
    return result, errors


def _ratings(where: str, question: dict[str, Any], value: Any, out: list[tuple[str, str, int]]) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        return [_error(where, "attribute ratings are a list of {attribute, subject, score}")]
    errors = []
    seen = set()
    low, high = RATING_SCALE
    for i, rating in enumerate(value):
        at = f"{where}.{i}"
        if not isinstance(rating, dict) or set(rating) != {"attribute", "subject", "score"}:
            errors.append(_error(at, "a rating is {attribute, subject, score} and nothing else"))
            continue
        attribute, subject, score = rating["attribute"], rating["subject"], rating["score"]
        if attribute not in question["attributes"]:
            errors.append(_error(f"{at}.attribute", f"one of {', '.join(question['attributes'])}"))
        if subject not in question["subjects"]:
            errors.append(_error(f"{at}.subject", f"one of {', '.join(question['subjects'])}"))
        if not isinstance(score, int) or isinstance(score, bool) or not low <= score <= high:
            errors.append(_error(f"{at}.score", f"a whole number from {low} to {high}"))
        if not isinstance(attribute, str) or not isinstance(subject, str):
            continue
        if (attribute, subject) in seen:
            errors.append(_error(at, f"{attribute} of {subject} is rated twice"))
        seen.add((attribute, subject))
        out.append((attribute, subject, score))
    return errors

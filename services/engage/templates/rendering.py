"""Merge fields and rendering: the one place that says what a message may name.

Templates (and the subject and body of a one-off message) are Jinja text rendered in
`jinja2.sandbox.SandboxedEnvironment`: a template cannot reach Python's internals
(attributes beginning with `_`, unsafe callables), only the merge fields below. Text mail
is not HTML, so autoescaping is off; `StrictUndefined` makes a field without a value an
error instead of an empty string.

A template is checked when it is saved (`check`): a syntax error, or a field outside
MERGE_FIELDS (`jinja2.meta.find_undeclared_variables`), is refused there with 422 naming
the template's field, never found at send time. A marketing template must name
`{{ unsubscribe_link }}`; a one-off marketing message whose body does not gets the link
appended (`with_unsubscribe_footer`). Every marketing email carries the link in its
`List-Unsubscribe` header besides (services/engage/outbound/sender.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

# Every field a message may name, and who fills it in.
ENGAGE_FIELDS = {
    "name": "the customer's name (engage's contacts)",
    "first_name": "the first word of the customer's name",
    "email": "the customer's email address",
    "unsubscribe_link": "the customer's signed one-click unsubscribe link (marketing)",
}
CALLER_FIELDS = {
    "offer_code": "the code of an offer value issued",
    "offer_title": "the offer's title",
    "offer_expires": "when the offer expires",
    "feedback_link": "a survey's signed answer link",
    "idea_title": "the title of a customer's idea",
    "campaign_name": "the campaign the message belongs to",
}
MERGE_FIELDS = {**ENGAGE_FIELDS, **CALLER_FIELDS}
UNSUBSCRIBE_FIELD = "unsubscribe_link"

_environment = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)


class TemplateError(ValueError):
    """A template that cannot be used: its message says why (for a 422 or a refusal's reason)."""


def fields_named(source: str) -> set[str]:
    """The fields `source` names; TemplateError for a syntax error."""

    try:
        parsed: nodes.Template = _environment.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"not a valid template: {exc.message} (line {exc.lineno})") from None
    return set(meta.find_undeclared_variables(parsed))


def check(source: str) -> set[str]:
    """The merge fields `source` names; TemplateError for a syntax error or a field not in MERGE_FIELDS."""

    named = fields_named(source)
    unknown = sorted(named - MERGE_FIELDS.keys())
    if unknown:
        raise TemplateError(f"names unknown merge fields {unknown}; the fields are {sorted(MERGE_FIELDS)}")
    return named


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    return _environment.from_string(source)


def render(source: str, values: Mapping[str, str]) -> str:
    """`source` with `values`; TemplateError for a field without a value (or a sandbox refusal)."""

    try:
        return _compiled(source).render(values)
    except UndefinedError as exc:
        raise TemplateError(f"a merge field has no value: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateError(f"refused by the template sandbox: {exc}") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"not a valid template: {exc.message} (line {exc.lineno})") from None


def with_unsubscribe_footer(body: str, link: str) -> str:
    """A one-off marketing body that does not show the unsubscribe link, with the link at its end."""

    return f"{body.rstrip()}\n\n--\nTo stop these emails: {link}\n"


def engage_values(*, name: str | None, email: str | None, unsubscribe_link: str | None) -> dict[str, str]:
    """engage's own merge fields for one customer (a field without a value is left out)."""

    values = {"name": name, "first_name": name.split()[0] if name and name.split() else None, "email": email}
    values[UNSUBSCRIBE_FIELD] = unsubscribe_link
    return {key: value for key, value in values.items() if value}

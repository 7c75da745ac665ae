"""Checks envelopes and campaigns against the JSON Schemas bundled with the
package (copies of the repository's ``schemas/``, generated from the node's
own types), so that what the node would refuse is refused before it is sent,
naming the field as the node's 400s do (``actions[0].url: ...``).

The schema's ``maxLength`` limits are checked in UTF-8 bytes, as the node
counts them. Beyond the schema, two rules of the node are checked here:
``pos`` is Herald's own, and ``fallback`` needs an audience naming users.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Iterable, Iterator, Mapping

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from .errors import InvalidMessage

__all__ = ["check_envelope", "check_campaign", "MAX_ENVELOPE_BYTES"]

#: The node's default ``limits.max_envelope_bytes``.
MAX_ENVELOPE_BYTES = 64 * 1024


def _max_bytes(validator: Any, limit: int, instance: Any, schema: Any) -> Iterator[ValidationError]:
    size = len(instance.encode("utf-8")) if isinstance(instance, str) else 0
    if size > limit:
        yield ValidationError(f"{size} bytes is over the {limit}-byte limit")


# Draft 2020-12, with maxLength in bytes.
_Validator = validators.extend(Draft202012Validator, {"maxLength": _max_bytes})  # type: ignore[no-untyped-call]


def _load(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath("schemas", name).read_text("utf-8"))


_ENVELOPE = _Validator(_load("envelope.schema.json"))
_CAMPAIGN = _Validator(_load("campaign.schema.json"))

# Friendlier words for the schema's URL patterns.
_PATTERNS = {
    r"^https?://[^\s\\]*$": "must be an http(s) URL",
    r"^(https?://|/(?![/\\]))[^\s\\]*$": "must be an http(s) URL or a path starting with /",
}
_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _alternatives(schemas: Any) -> "list[str]":
    """``[{"required": ["a"]}, {"required": ["b"]}]`` -> ``["a", "b"]``, else ``[]``."""
    if isinstance(schemas, list) and all(isinstance(s, dict) and len(s.get("required", ())) == 1 for s in schemas):
        return [s["required"][0] for s in schemas]
    return []


def _or(names: "list[str]") -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def _refusal(e: ValidationError) -> InvalidMessage:
    """One schema error as the node would word it: the field, then why."""
    field = _field(e.absolute_path)
    kind: Any = e.validator
    value: Any = e.validator_value
    instance: Any = e.instance
    schema: Any = e.schema

    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if kind == "required":
        missing = next(p for p in value if p not in instance)
        return InvalidMessage(at(missing), "required")
    if kind == "additionalProperties":
        known = schema.get("properties", {})
        extra = next(k for k in instance if k not in known)
        return InvalidMessage(at(extra), "unknown field" + (f", expected one of {', '.join(known)}" if known else ""))
    names = _alternatives(value.get("anyOf") if kind == "not" and isinstance(value, dict) else value)
    if kind == "anyOf" and names:
        return InvalidMessage(at(names[0]), "a " + " or a ".join(names) + " is required")
    if kind == "oneOf" and names:
        return InvalidMessage(field, f"needs exactly one of {_or(names)}")
    if kind == "not" and names:
        return InvalidMessage(field, f"must not have {_or(names)}")
    if kind == "enum":
        return InvalidMessage(field, "must be one of " + ", ".join(map(str, value)))
    if kind == "const":
        return InvalidMessage(field, f"must be {json.dumps(value)}")
    if kind == "type":
        types = [value] if isinstance(value, str) else value
        return InvalidMessage(field, "must be " + " or ".join(_TYPES.get(t, t) for t in types))
    if kind == "pattern":
        return InvalidMessage(field, _PATTERNS.get(value, f"must match {value}"))
    if kind == "minLength":
        return InvalidMessage(field, "must not be empty" if value == 1 else f"at least {value} characters")
    if kind in ("minItems", "minProperties"):
        return InvalidMessage(field, "must not be empty" if value == 1 else f"at least {value} entries")
    if kind == "maxItems":
        return InvalidMessage(field, f"at most {value} entries")
    if kind == "minimum":
        return InvalidMessage(field, f"must be at least {value}")
    if kind == "oneOf" and field == "to":
        return InvalidMessage(field, '"all", or an object of users, segments and/or where')
    return InvalidMessage(field or "envelope", e.message)


def check_envelope(envelope: Mapping[str, Any], *, max_bytes: int = MAX_ENVELOPE_BYTES) -> str:
    """Raises ``InvalidMessage`` for what the node would refuse from a
    publisher; returns the envelope as the compact JSON to send."""
    error = best_match(_ENVELOPE.iter_errors(envelope))
    if error is not None:
        raise _refusal(error)
    if "pos" in envelope:
        raise InvalidMessage("pos", "set by Herald; leave it out")
    to = envelope.get("to")
    if envelope.get("fallback") and not (isinstance(to, Mapping) and "users" in to):
        raise InvalidMessage("fallback", "only for audiences naming users")
    text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidMessage("envelope", f"{size} bytes is over the {max_bytes}-byte limit")
    return text


def check_campaign(campaign: Mapping[str, Any]) -> None:
    """Raises ``InvalidMessage`` for a campaign the schema refuses. (Whether
    its CEL compiles only the node can say: it answers 400 naming the field.)"""
    error = best_match(_CAMPAIGN.iter_errors(campaign))
    if error is not None:
        raise _refusal(error)

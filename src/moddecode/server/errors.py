"""HTTP errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

The library raises `ModDecodeError`s; this is the one place that turns them (and request validation
failures, limits and auth) into status codes, so route code never builds error bodies by hand.
"""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from ..errors import InfeasibleWeightsError, MissingReferenceError, ModDecodeError, UnknownNameError

TYPE_BY_STATUS = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
                  429: "rate_limit_error"}


class ApiError(Exception):
    """An error to send to the client as-is."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = TYPE_BY_STATUS.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self, headers: dict | None = None) -> Response:
        # ASCII JSON: a message may quote client input that UTF-8 cannot encode (a lone surrogate).
        return Response(json.dumps(self.body()), status_code=self.status, media_type="application/json",
                        headers={**self.headers, **(headers or {})})


def from_library(exc: ModDecodeError, param: str | None = None) -> ApiError:
    """A library error (bad weights, divergence, decoding option, infeasible weights) as a 400."""
    code = ("infeasible_weights" if isinstance(exc, InfeasibleWeightsError)
            else "missing_reference" if isinstance(exc, MissingReferenceError)
            else "unknown_name" if isinstance(exc, UnknownNameError) else "invalid_value")
    if param is None and isinstance(exc, (InfeasibleWeightsError, MissingReferenceError)):
        param = "weights"
    return ApiError(400, str(exc), param=param, code=code)


def from_validation(exc: RequestValidationError) -> ApiError:
    """Pydantic/JSON errors as a 400 naming the first bad field, e.g. `messages[0].role`."""
    errors = exc.errors()
    # A union (e.g. `stop`: a string or a list of them) reports a type mismatch for each branch it is not;
    # the error from the branch the input did match says what is actually wrong.
    errors = sorted(errors, key=lambda e: str(e.get("type")).endswith("_type"))
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "value_error"}
    param = _param(first.get("loc", ()))
    kind = first.get("type")
    if kind == "extra_forbidden":
        message = f"unknown field {param!r}: this server does not accept it (see GET /v1/models for MOD's fields)"
    elif kind == "json_invalid":
        message = f"request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
        param = None
    elif kind == "missing" and param is None:
        message = "request body is missing; send a JSON object"
    elif kind == "string_unicode":  # a lone surrogate in a field name: the name itself cannot be read
        message = "request body has a field name that is not valid Unicode; \\u escapes must come in surrogate pairs"
    else:
        message = first.get("msg", "invalid value").removeprefix("Value error, ")
        if str(kind).endswith("_type"):  # strict types: say what was sent, e.g. a string for a number
            message += f", got {_json_type(first.get('input'))}"
        if param:
            message = f"{param}: {message}"
    # A union field (e.g. `stop`) reports one error per branch: count fields, not branches.
    others = {p for p in map(_param, (e.get("loc", ()) for e in errors))
              if p != param and not (p and param and param.startswith((p + "[", p + ".")))}
    more = f" (and problems with {', '.join(sorted(map(str, others)))})" if others else ""
    code = "extra_forbidden" if kind == "extra_forbidden" else "invalid_value"
    return ApiError(400, message + more, param=param, code=code)


def _json_type(value) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
             dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _param(loc) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role'; union-branch names are dropped."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not _is_type_tag(part):
            out += f".{part}" if out else part
    return out or None


def _is_type_tag(part: str) -> bool:
    # pydantic names union branches like 'str', 'list[str]', 'function-after[...]' in error locations
    return part in {"str", "int", "float", "bool", "list", "dict"} or "[" in part or part.startswith("function-")

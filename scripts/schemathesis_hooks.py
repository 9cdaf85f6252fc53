"""Schemathesis hooks for scripts/test (schemathesis 4.x).

Loaded through the SCHEMATHESIS_HOOKS environment variable; the check below is enabled by
naming it in `--checks`.
"""

import schemathesis

PROBLEM_JSON = "application/problem+json"


def _header(headers, name):
    """First value of a header; schemathesis 4 gives lower-cased names with list values."""
    value = headers.get(name.lower())
    if value is None:
        value = headers.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value


CORE_ENTITIES = "/core-entities/"


@schemathesis.check
def client_errors_are_problem_json(ctx, response, case):
    """Every 4xx answer is an RFC 9457 problem document (Content-Type application/problem+json),
    except the 401 of core entities, which Konnect's spec gives as JSON `{message, status}`."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = _header(response.headers, "content-type")
    if response.status_code == 401 and CORE_ENTITIES in case.path:
        body = response.json()
        if not (
            content_type
            and content_type.strip().lower().startswith("application/json")
            and isinstance(body, dict)
            and isinstance(body.get("message"), str)
            and body.get("status") == 401
        ):
            raise AssertionError(
                f"core-entities 401 answered {content_type!r} {body!r}, expected "
                "application/json {message, status: 401}"
            )
        return None
    if content_type is None or not content_type.strip().lower().startswith(PROBLEM_JSON):
        raise AssertionError(
            f"{response.status_code} answered with Content-Type {content_type!r}, "
            f"expected {PROBLEM_JSON}"
        )
    return None

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


# Valid bodies for the operations that create resources, so the stateful phase gets real ids
# to follow the OpenAPI links with: random bodies are nearly always (rightly) refused, and then
# no link is ever taken. Keyed by "METHOD path"; each takes a unique suffix.
def _valid_bodies():
    cp = "/v2/control-planes/{control_plane_id}"
    entities = f"{cp}/core-entities"
    return {
        "POST /v2/control-planes": lambda s: {"name": f"fuzz-{s}", "labels": {"fuzz": "yes"}},
        "POST /v2/portals": lambda s: {"name": f"portal-{s}"},
        "POST /v2/tokens": lambda s: {"name": f"token-{s}", "role": "viewer"},
        f"POST {cp}/dp-join-tokens": lambda s: {"ttl_seconds": 600},
        f"POST {cp}/dp-client-certificates/generate": lambda s: {},
        f"POST {entities}/services": lambda s: {
            "name": f"svc-{s}",
            "url": "http://upstream.fuzz.internal:8080/",
        },
        f"POST {entities}/routes": lambda s: {"name": f"route-{s}", "paths": [f"/r{s}"]},
        f"POST {entities}/services/{{service}}/routes": lambda s: {
            "name": f"route-{s}",
            "paths": [f"/s{s}"],
        },
        f"POST {entities}/consumers": lambda s: {"username": f"user-{s}"},
        f"POST {entities}/consumers/{{consumer}}/key-auth": lambda s: {"key": f"key-{s}"},
        f"POST {entities}/upstreams": lambda s: {"name": f"up-{s}.fuzz.internal"},
        f"POST {entities}/upstreams/{{upstream}}/targets": lambda s: {"target": "10.9.8.7:8080"},
        f"POST {entities}/plugins": lambda s: {"name": "cors"},
        f"POST {entities}/services/{{service}}/plugins": lambda s: {"name": "cors"},
        f"POST {entities}/routes/{{route}}/plugins": lambda s: {"name": "cors"},
        f"POST {entities}/consumers/{{consumer}}/plugins": lambda s: {
            "name": "rate-limiting",
            "config": {"minute": 100},
        },
    }


VALID_BODIES = _valid_bodies()


@schemathesis.hook
def flatmap_body(ctx, body):
    """For creating operations, draw either the generated body or a valid one (half and half)."""
    from hypothesis import strategies as st

    operation = ctx.operation
    key = f"{str(operation.method).upper()} {operation.path}"
    make = VALID_BODIES.get(key)
    if make is None:
        return st.just(body)
    valid = st.uuids().map(lambda u: make(u.hex[:12]))
    return st.one_of(st.just(body), valid)

"""Hand-written OpenAPI 3.1 description of the HTTP API.

Written by hand rather than generated so that the descriptions can say, in
words, what the law-facing fields mean. The household body is not copied
here: it is referenced by URL to ``/api/v1/schema/household.json``, which is
served from ``assessment.schema.HOUSEHOLD_SCHEMA``, so the two cannot drift.
``tests/test_openapi.py`` checks that every ``/api/v1`` route is described.
"""

from __future__ import annotations

import copy
from typing import Any, Final

#: Relative reference, resolved against the URL this document is served from.
HOUSEHOLD_SCHEMA_REF: Final = "/api/v1/schema/household.json"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_ON_PARAMETER: Final[dict[str, Any]] = {
    "name": "on",
    "in": "query",
    "required": False,
    "description": (
        "Reference date (YYYY-MM-DD) choosing the legal standard; today when absent. "
        "An `on` key in the body wins over this parameter."
    ),
    "schema": {"type": "string", "format": "date"},
}

_COMMON_ERRORS: Final[dict[str, Any]] = {
    "400": _error_response("Body is empty, not JSON, or not a JSON object (`field: body`)."),
    "413": _error_response("Body larger than the limit (1 MiB; 8 MiB for batches)."),
    "422": _error_response("Household data invalid; `problems` lists each field."),
    "500": _error_response("Unexpected error (logged; no details are returned)."),
}

_DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Tự rà soát API",
        "version": "1.0.0",
        "summary": "Household self-assessment against Vietnam's multidimensional poverty standard.",
        "description": (
            "Estimates a household's status (poor, near-poor, average living standard, "
            "not poor) under the standard in force on a date, lists the deprivations and "
            "the support policies that may apply, with their legal references. The result "
            "is an estimate: only the commune review makes a household officially poor "
            "or near-poor. All human-readable texts are in Vietnamese (`*_vi`)."
        ),
        "license": {"name": "Proprietary"},
    },
    "servers": [{"url": "/"}],
    "paths": {
        "/api/v1/assessments": {
            "post": {
                "operationId": "createAssessment",
                "summary": "Assess one household (stateless; nothing is stored).",
                "parameters": [_ON_PARAMETER],
                "requestBody": {
                    "required": True,
                    "description": "The household quick form.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Household"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "The assessment.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/AssessmentResult"}
                            }
                        },
                    },
                    **_COMMON_ERRORS,
                },
            }
        },
        "/api/v1/assessments/batch": {
            "post": {
                "operationId": "createAssessmentsBatch",
                "summary": "Assess up to 1,000 households; each item succeeds or fails alone.",
                "parameters": [_ON_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/BatchRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "One entry per household, in order.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchResult"}
                            }
                        },
                    },
                    **_COMMON_ERRORS,
                },
            }
        },
        "/api/v1/standards": {
            "get": {
                "operationId": "listStandards",
                "summary": "Poverty standards by period: income lines, indicators, legal citations.",
                "responses": {
                    "200": {
                        "description": "The catalogue, one entry per legal period.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Standard"},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/api/v1/schema/household.json": {
            "get": {
                "operationId": "getHouseholdSchema",
                "summary": "JSON Schema (2020-12) of the household quick form.",
                "responses": {
                    "200": {
                        "description": "The schema.",
                        "content": {"application/schema+json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/v1/chat": {
            "post": {
                "operationId": "chat",
                "summary": "One turn of the questionnaire conversation (web chat and tests).",
                "description": (
                    "Send either free `text` or the `payload` of a choice the bot offered. "
                    "The conversation state is kept on the server, per `user`."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "The bot's replies.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatResponse"}
                            }
                        },
                    },
                    **_COMMON_ERRORS,
                    "503": _error_response("The database stayed busy; send the same message again."),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness probe.",
                "responses": {
                    "200": {
                        "description": "The service is up.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": "ok"}},
                                    "required": ["status"],
                                }
                            }
                        },
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Household": {
                "description": "The household quick form; the schema is served separately.",
                "$ref": HOUSEHOLD_SCHEMA_REF,
            },
            "Problem": {
                "type": "object",
                "required": ["code", "field", "message_vi"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "required, invalid_type, out_of_range, unknown_field, "
                        "unknown_value, exactly_one_of, inconsistent, unknown_commune, "
                        "date_out_of_range, invalid_date, invalid_json, too_large.",
                    },
                    "field": {
                        "type": "string",
                        "description": "JSON path of the field, e.g. `members[2].age`, `on`, `body`.",
                    },
                    "message_vi": {"type": "string"},
                },
            },
            "ErrorDetail": {
                "type": "object",
                "required": ["code", "message_vi", "problems"],
                "properties": {
                    "code": {"type": "string"},
                    "message_vi": {"type": "string"},
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
            },
            "StandardRef": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name_vi": {"type": "string"},
                    "valid_from": {"type": "string", "format": "date"},
                    "valid_to": {"type": ["string", "null"], "format": "date"},
                    "reference": {"type": "string", "description": "Legal citation."},
                },
            },
            "Standard": {
                "type": "object",
                "description": "One legal period: income lines by area, indicators, citations.",
                "additionalProperties": True,
            },
            "Indicator": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name_vi": {"type": "string"},
                    "dimension": {"type": "string"},
                    "deprived": {"type": ["boolean", "null"]},
                    "answered": {"type": "boolean"},
                    "reason_vi": {"type": ["string", "null"]},
                    "reference": {"type": "string"},
                    "provisional": {"type": "boolean"},
                },
            },
            "Policy": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name_vi": {"type": "string"},
                    "benefit_vi": {"type": "string"},
                    "office_id": {"type": "string"},
                    "office_vi": {"type": "string"},
                    "reference": {"type": "string"},
                    "provisional": {"type": "boolean"},
                    "condition_vi": {"type": ["string", "null"]},
                },
            },
            "AssessmentResult": {
                "type": "object",
                "required": ["status", "standard", "deprivation_count", "deprivations"],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["poor", "near_poor", "average_living", "not_poor"],
                    },
                    "status_vi": {"type": "string"},
                    "standard": {"$ref": "#/components/schemas/StandardRef"},
                    "on": {"type": "string", "format": "date"},
                    "area": {"type": "string", "enum": ["rural", "urban"]},
                    "commune": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "name": {"type": "string"},
                            "province": {"type": "string"},
                        },
                    },
                    "household_size": {"type": "integer"},
                    "income_per_capita_vnd": {"type": "integer", "description": "VND per person per month."},
                    "income_line_vnd": {"type": "integer"},
                    "income_gap_vnd": {
                        "type": "integer",
                        "description": "Line minus income per capita; negative when above the line.",
                    },
                    "average_living_max_vnd": {"type": ["integer", "null"]},
                    "deprivation_count": {"type": "integer"},
                    "deprivation_threshold": {"type": "integer"},
                    "deprivations": {"type": "array", "items": {"type": "string"}},
                    "indicators": {"type": "array", "items": {"$ref": "#/components/schemas/Indicator"}},
                    "unanswered": {"type": "array", "items": {"type": "string"}},
                    "policies": {"type": "array", "items": {"$ref": "#/components/schemas/Policy"}},
                    "provisional": {"type": "boolean"},
                    "provisional_values": {"type": "array", "items": {"type": "string"}},
                    "what_would_change": {"type": "array", "items": {"type": "string"}},
                    "summary_vi": {"type": "string"},
                    "disclaimer_vi": {"type": "string"},
                    "next_standard": {
                        "description": "The same result under the next legal period, if any.",
                        "$ref": "#/components/schemas/AssessmentResult",
                    },
                },
            },
            "BatchRequest": {
                "type": "object",
                "required": ["households"],
                "additionalProperties": False,
                "properties": {
                    "households": {
                        "type": "array",
                        "maxItems": 1000,
                        "items": {"$ref": "#/components/schemas/Household"},
                    },
                    "on": {
                        "type": "string",
                        "format": "date",
                        "description": "Default date for items without their own `on`.",
                    },
                },
            },
            "BatchItem": {
                "type": "object",
                "required": ["index", "ok"],
                "properties": {
                    "index": {"type": "integer"},
                    "ok": {"type": "boolean"},
                    "result": {"$ref": "#/components/schemas/AssessmentResult"},
                    "error": {"$ref": "#/components/schemas/ErrorDetail"},
                },
            },
            "BatchResult": {
                "type": "object",
                "required": ["count", "ok", "failed", "results"],
                "properties": {
                    "count": {"type": "integer"},
                    "ok": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchItem"}},
                },
            },
            "ChatRequest": {
                "type": "object",
                "required": ["user"],
                "properties": {
                    "user": {"type": "string", "description": "Stable, opaque id of the web user."},
                    "text": {"type": "string", "description": "What the user typed."},
                    "payload": {"type": "string", "description": "Payload of a chosen button."},
                    "message_id": {
                        "type": "string",
                        "description": "Client's id of this message; a retry with the same id is answered once.",
                    },
                },
                "oneOf": [{"required": ["text"]}, {"required": ["payload"]}],
            },
            "Choice": {
                "type": "object",
                "required": ["label", "payload"],
                "properties": {"label": {"type": "string"}, "payload": {"type": "string"}},
            },
            "ChatMessage": {
                "type": "object",
                "required": ["text"],
                "properties": {
                    "text": {"type": "string", "maxLength": 2000},
                    "choices": {"type": "array", "items": {"$ref": "#/components/schemas/Choice"}},
                },
            },
            "ChatResponse": {
                "type": "object",
                "required": ["messages", "question_id", "done"],
                "properties": {
                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/ChatMessage"}},
                    "question_id": {"type": ["string", "null"]},
                    "done": {"type": "boolean"},
                    "assessment": {"$ref": "#/components/schemas/AssessmentResult"},
                },
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """Return a fresh copy of the OpenAPI document (callers may mutate it)."""
    return copy.deepcopy(_DOCUMENT)

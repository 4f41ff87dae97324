"""The JSON Schema subset: unsupported keywords are refused with their path, values are checked with
messages that name the JSON path."""

import pytest

from pivoice.tools.schema import SchemaError, check_schema, close_objects, json_equal, validate

TIMER = {"type": "object", "required": ["minutes"], "properties": {
    "minutes": {"type": "integer", "minimum": 1, "maximum": 1440, "description": "how long"},
    "label": {"type": ["string", "null"], "maxLength": 10, "pattern": "^[a-z ]*$"}}}


@pytest.mark.parametrize("schema, where, words", [
    ({"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}, "properties.a.format",
     "unsupported JSON Schema keyword"),
    ({"type": "object", "oneOf": []}, "oneOf", "unsupported"),
    ({"type": "thing"}, "type", "must be one of"),
    ({"type": ["string", "string"]}, "type", "must be one of"),
    ({"type": []}, "type", "must be one of"),
    ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties", "true or false"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required", "'b'"),
    ({"type": "object", "properties": []}, "properties", "mapping"),
    ({"type": "string", "pattern": "("}, "pattern", "regular expression"),
    ({"type": "string", "minLength": -1}, "minLength", "non-negative"),
    ({"type": "string", "maxLength": True}, "maxLength", "non-negative"),
    ({"type": "number", "minimum": "1"}, "minimum", "number"),
    ({"type": "number", "exclusiveMinimum": True}, "exclusiveMinimum", "number"),
    ({"type": "array", "items": [{"type": "string"}]}, "items", "mapping"),
    ({"enum": []}, "enum", "non-empty"),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "x"}}}}, "properties.a.items.type",
     "must be one of"),
    ("string", "", "mapping"),
])
def test_check_schema_refuses_what_it_cannot_check(schema, where, words):
    with pytest.raises(SchemaError) as err:
        check_schema(schema)
    assert err.value.where == where
    assert words in err.value.reason


def test_check_schema_accepts_every_supported_keyword():
    check_schema({"type": "object", "title": "t", "description": "d", "additionalProperties": True,
                  "required": ["a"], "properties": {
                      "a": {"type": "string", "enum": ["x", "y"], "minLength": 1, "maxLength": 3, "pattern": "^."},
                      "b": {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": -1,
                            "exclusiveMaximum": 2, "default": 0.5},
                      "c": {"type": "array", "items": {"type": "boolean"}, "minItems": 0, "maxItems": 4},
                      "d": {"const": 3}, "e": {"type": "null"}}})


@pytest.mark.parametrize("value, expected", [
    ({"minutes": 0}, ["$.minutes: must be >= 1"]),
    ({"minutes": 2000}, ["$.minutes: must be <= 1440"]),
    ({"minutes": 2.5}, ["$.minutes: must be integer, got number"]),
    ({"minutes": True}, ["$.minutes: must be integer, got boolean"]),
    ({"minutes": "5"}, ["$.minutes: must be integer, got string"]),
    ({}, ["$: missing required property 'minutes'"]),
    ({"minutes": 5, "colour": "red"}, ["$.colour: unknown property (allowed: minutes, label)"]),
    ({"minutes": 5, "bad key": 1}, ["$['bad key']: unknown property (allowed: minutes, label)"]),
    ({"minutes": 5, "label": "Pasta"}, ["$.label: must match the pattern '^[a-z ]*$'"]),
    ({"minutes": 5, "label": "a" * 11}, ["$.label: must be at most 10 characters"]),
    ([], ["$: must be object, got array"]),
])
def test_validate_names_the_json_path(value, expected):
    assert validate(TIMER, value) == expected


@pytest.mark.parametrize("value", [{"minutes": 5}, {"minutes": 5.0}, {"minutes": 1, "label": None},
                                   {"minutes": 1440, "label": "pasta"}])
def test_validate_accepts_good_values(value):
    assert validate(TIMER, value) == []


def test_additional_properties_true_allows_unknown_names():
    assert validate({"type": "object", "additionalProperties": True}, {"anything": 1}) == []


def test_nested_arrays_and_objects_report_full_paths():
    schema = {"type": "object", "properties": {"rooms": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 2}}}}}}
    assert validate(schema, {"rooms": [{"name": "ok"}, {"name": "x"}]}) == ["$.rooms[1].name: must be at least "
                                                                            "2 characters"]
    assert validate(schema, {"rooms": []}) == ["$.rooms: must have at least 1 items"]
    assert validate(schema, {"rooms": [{"name": "ab"}] * 3}) == ["$.rooms: must have at most 2 items"]
    assert validate(schema, {"rooms": [{}]}) == ["$.rooms[0]: missing required property 'name'"]


def test_enum_const_and_exclusive_bounds():
    entity = {"type": "string", "enum": ["light.kitchen", "light.hall"]}
    assert validate(entity, "light.hall") == []
    assert validate(entity, "switch.boiler") == ["$: must be one of 'light.kitchen', 'light.hall'; got "
                                                 "'switch.boiler'"]
    assert validate({"enum": [1, 2]}, True) == ["$: must be one of 1, 2; got true"]   # JSON: true is not 1
    assert validate({"enum": [1, 2]}, 1.0) == []
    assert validate({"const": "on"}, "off") == ["$: must be 'on'"]
    bounds = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert validate(bounds, 0) == ["$: must be > 0"]
    assert validate(bounds, 1) == ["$: must be < 1"]
    assert validate(bounds, 0.5) == []


def test_json_equal_is_type_aware():
    assert json_equal({"a": [1, True]}, {"a": [1.0, True]})
    assert not json_equal({"a": [1]}, {"a": [True]})
    assert not json_equal("1", 1)
    assert not json_equal(None, False)


def test_close_objects_writes_additional_properties_false_everywhere_it_was_left_out():
    schema = {"type": "object", "properties": {"inner": {"type": "object", "properties": {}},
                                                "open": {"type": "object", "additionalProperties": True},
                                                "list": {"type": "array", "items": {"type": "object"}}}}
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["inner"]["additionalProperties"] is False
    assert closed["properties"]["open"]["additionalProperties"] is True
    assert closed["properties"]["list"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema   # the input is not modified

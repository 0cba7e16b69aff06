"""Marshmallow schemas for the API's input and output."""
from marshmallow import Schema, fields


class ApiErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class ApiErrorSchema(Schema):
    error = fields.Nested(ApiErrorDetailSchema, required=True)


class BalanceSchema(Schema):
    currency = fields.String(required=True, metadata={"example": "USD"})
    available = fields.Integer(required=True, metadata={"description": "minor units"})
    held = fields.Integer(required=True, metadata={"description": "minor units"})
    pending = fields.Integer(required=True, metadata={"description": "minor units"})

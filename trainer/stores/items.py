"""DynamoDB items to and from plain Python values (floats travel as Decimals, exactly, by repr;
whole numbers come back as ints; absent values are not written), the table's shared reads, and an
item as its reader sees it, without the table's keys."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any


@functools.cache
def _codecs() -> tuple[Any, Any]:
    # boto3 is imported with the first item, not with the module: a cold start pays for it only
    # when it touches DynamoDB.
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def serialize(value: Any) -> Any:
    return _codecs()[0].serialize(_number(value))


def item_of(values: dict[str, Any]) -> dict[str, Any]:
    return {k: serialize(v) for k, v in values.items() if v is not None}


def public(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item without the table's keys (pk, sk): they are the table's layout, not the record a
    user reads or a copy keeps."""
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}


def _number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def plain(item: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    out = {}
    for key, raw in item.items():
        value = _codecs()[1].deserialize(raw)
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
        out[key] = value
    return out


class Table:
    """Reads of one DynamoDB table shared by the stores' item kinds: strongly consistent, paged."""

    table: str
    db: Any

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self.db.get_item(TableName=self.table, Key=item_of({"pk": pk, "sk": sk}), ConsistentRead=True)
        return plain(resp["Item"]) if "Item" in resp else None

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": item_of({":pk": pk, ":prefix": prefix}),
            "ConsistentRead": True,
        }
        while True:
            resp = self.db.query(**kwargs)
            items += [plain(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

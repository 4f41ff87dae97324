"""The default conversation of one session: an ordered list of items (dicts in wire shape).

Items keep their audio (base64) here for `conversation.item.retrieve`; events
that announce items strip it. Used from the ASGI event loop only.
"""

from __future__ import annotations


class ItemNotFound(KeyError):
    pass


class Conversation:
    def __init__(self) -> None:
        self._items: list[dict] = []

    def add(self, item: dict, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` ("root" = first, None = last); returns the id of the item before it."""
        if previous_item_id is None:
            index = len(self._items)
        elif previous_item_id == "root":
            index = 0
        else:
            index = self._index(previous_item_id) + 1
        self._items.insert(index, item)
        return self._items[index - 1]["id"] if index > 0 else None

    def get(self, item_id: str) -> dict:
        return self._items[self._index(item_id)]

    def delete(self, item_id: str) -> None:
        del self._items[self._index(item_id)]

    def __contains__(self, item_id: str) -> bool:
        return any(item["id"] == item_id for item in self._items)

    def find(self, **fields) -> dict | None:
        """The last item whose keys equal `fields` (e.g. type="function_call", call_id=...), or None."""
        return next((i for i in reversed(self._items) if all(i.get(k) == v for k, v in fields.items())), None)

    def __len__(self) -> int:
        return len(self._items)

    def _index(self, item_id: str) -> int:
        for i, item in enumerate(self._items):
            if item["id"] == item_id:
                return i
        raise ItemNotFound(item_id)

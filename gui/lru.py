"""The app's one cache shape: least recently used first out, once over a budget.

The session keeps captions and viewer copies of photos by count; the worker keeps encoder
features by bytes. Each item costs `cost(value)` of the budget (1 unless told).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    def __init__(self, budget: int, cost: Callable[[V], int] = lambda _: 1) -> None:
        self.budget = budget
        self.cost = cost
        self._items: OrderedDict[K, V] = OrderedDict()
        self._spent = 0

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value kept for `key` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key`, dropping the least recently used over the budget; the newest
        item stays even when it alone is over."""
        if key in self._items:
            self._spent -= self.cost(self._items.pop(key))
        self._items[key] = value
        self._spent += self.cost(value)
        while self._spent > self.budget and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._spent -= self.cost(dropped)

    def clear(self) -> None:
        self._items.clear()
        self._spent = 0

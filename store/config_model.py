"""The base of every config model: what all of them refuse alike."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, model_validator


def _takes_numbers_not_booleans(annotation: Any) -> bool:
    """Whether a field of this type holds an int or float and no bool (``int``, ``float | None``)."""
    if get_origin(annotation) in (Union, types.UnionType):
        options = get_args(annotation)
        return bool not in options and any(_takes_numbers_not_booleans(a) for a in options)
    return annotation in (int, float)


class ConfigModel(BaseModel):
    """pydantic reads ``true`` as 1 for an int or float field: ``--set train.batch_size=true`` trained
    with batches of one clip. A config value is written by hand, so a yes/no where a number belongs
    is refused, naming the field."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(field.alias or name)
                if isinstance(value, bool) and _takes_numbers_not_booleans(field.annotation):
                    raise ValueError(f"{name}: {str(value).lower()} is a yes/no value, not a number")
        return data

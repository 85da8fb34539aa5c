"""Crashes are named by their leaf failure and shown once per kind and place, in a bounded set."""

from __future__ import annotations

import asyncio

import pytest

from bridge.runtime.faults import SeenFaults, describe, location


def crash_a(n: int) -> None:
    raise RuntimeError(f"bug A, time {n}")


def crash_b(n: int) -> None:
    raise RuntimeError(f"bug A, time {n}")  # same type and message, another place


async def in_a_task_group(crash, n: int) -> BaseException:
    async def child() -> None:
        crash(n)

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
    except BaseException as exc:
        return exc
    raise AssertionError("no crash")


async def test_the_leaf_names_the_failure_never_the_group():
    group = await in_a_task_group(crash_a, 1)
    assert isinstance(group, BaseExceptionGroup)
    assert describe(group) == "RuntimeError: bug A, time 1"
    assert location(group).endswith("test_faults.py:13")


async def test_shown_once_per_kind_and_place_whatever_the_message():
    seen = SeenFaults()
    assert seen.first(await in_a_task_group(crash_a, 1))
    assert not seen.first(await in_a_task_group(crash_a, 2))  # same bug, new message
    assert seen.first(await in_a_task_group(crash_b, 1))  # same text, different bug
    with pytest.raises(ValueError, match="other") as caught:
        raise ValueError("other")
    assert seen.first(caught.value)
    assert len(seen) == 3


def test_the_set_is_bounded_and_forgets_the_least_recent():
    seen = SeenFaults(size=2)
    errors = []
    for n in range(3):
        try:
            exec(compile("raise KeyError(n)", f"<bug {n}>", "exec"), {"n": n})
        except KeyError as exc:
            errors.append(exc)
    assert [seen.first(e) for e in errors] == [True, True, True]
    assert len(seen) == 2
    assert seen.first(errors[0])  # forgotten, shown again
    assert not seen.first(errors[2])

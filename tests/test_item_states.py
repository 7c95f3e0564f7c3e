"""The item state machine is enforced in one place: `stages.items.move_items` is the only
writer of `Item.state`, it refuses moves the table does not allow, and a row in a state
the caller did not expect rolls the whole write back. On SQLite and PostgreSQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlmodel import col, select

from crowdloop.db import insert_ignore, session_scope
from crowdloop.models.tables import Campaign, IllegalTransition, Item, ItemState
from crowdloop.stages.items import CHUNK, check_move, move_items

ROOT = Path(__file__).resolve().parents[1]
S = ItemState


def _items(states: list[ItemState]) -> list[str]:
    """Items in the given states; returns their ids in order."""
    ids = [f"it-{n:05d}" for n in range(len(states))]
    with session_scope() as s:
        s.add(Campaign(id="c", spec={}, spec_hash="x", connector="simulator"))
        s.flush()
        rows = [
            {
                "id": item_id,
                "campaign_id": "c",
                "stage": "compare",
                "kind": "compare",
                "payload": {},
                "state": state,
                "group": item_id,
            }
            for item_id, state in zip(ids, states, strict=True)
        ]
        insert_ignore(s, Item, rows, ["id"])
    return ids


def _states(ids: list[str]) -> list[ItemState]:
    with session_scope() as s:
        found = dict(s.exec(select(Item.id, Item.state).where(col(Item.id).in_(ids))).all())
    return [ItemState(found[i]) for i in ids]


def test_every_legal_move_is_allowed_and_every_other_refused() -> None:
    legal = {
        (S.PENDING, S.PUSHED),
        (S.PENDING, S.EXHAUSTED),
        (S.PUSHED, S.COLLECTED),
        (S.PUSHED, S.PENDING),
        (S.PUSHED, S.EXHAUSTED),
        (S.COLLECTED, S.DONE),
        (S.COLLECTED, S.PENDING),
    }
    for src in S:
        for dst in S:
            if src == dst or (src, dst) in legal:
                check_move({src}, dst)
            else:
                with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
                    check_move({src}, dst)


def test_a_bulk_move_spans_chunks_and_sets_values(db_url: str) -> None:
    n = CHUNK + 7  # two statements
    ids = _items([S.PENDING] * n)
    with session_scope() as s:
        moved = move_items(s, ids, S.PUSHED, from_=S.PENDING, values={"pushes": Item.pushes + 1})
    assert moved == n
    assert set(_states(ids)) == {S.PUSHED}
    with session_scope() as s:
        assert set(s.exec(select(Item.pushes).where(col(Item.id).in_(ids))).all()) == {1}


def test_an_illegal_move_is_refused_before_anything_is_written(db_url: str) -> None:
    ids = _items([S.DONE, S.DONE])
    with (
        pytest.raises(IllegalTransition, match="done -> pending is not allowed"),
        session_scope() as s,
    ):
        move_items(s, ids, S.PENDING, from_=S.DONE)
    assert _states(ids) == [S.DONE, S.DONE]


def test_a_row_in_an_unexpected_state_rolls_the_whole_write_back(db_url: str) -> None:
    ids = _items([S.PENDING, S.COLLECTED, S.PENDING])
    with (
        pytest.raises(IllegalTransition, match=r"it-00001: is collected, not pending"),
        session_scope() as s,
    ):
        move_items(s, ids, S.PUSHED, from_=S.PENDING)
    assert _states(ids) == [S.PENDING, S.COLLECTED, S.PENDING]


def test_a_missing_item_is_an_error(db_url: str) -> None:
    ids = _items([S.PENDING])
    with pytest.raises(LookupError, match="no-such-item does not exist"), session_scope() as s:
        move_items(s, [*ids, "no-such-item"], S.PUSHED, from_=S.PENDING)
    assert _states(ids) == [S.PENDING]


def test_a_filtered_move_leaves_the_others_and_counts_what_moved(db_url: str) -> None:
    """Dynamic overlap's shape: only collected items under the cap go back to pending."""
    ids = _items([S.COLLECTED, S.COLLECTED, S.PUSHED])
    with session_scope() as s:
        s.exec(select(Item).where(Item.id == ids[1])).one().overlap = 4
    with session_scope() as s:
        moved = move_items(
            s,
            ids,
            S.PENDING,
            from_=S.COLLECTED,
            values={"overlap": Item.overlap + 1},
            where=[col(Item.overlap) < 4],
            strict=False,
        )
    assert moved == 1
    assert _states(ids) == [S.PENDING, S.COLLECTED, S.PUSHED]
    with pytest.raises(ValueError, match="strict=False"), session_scope() as s:
        move_items(s, ids, S.PENDING, from_=S.COLLECTED, where=[col(Item.overlap) < 4])


def _writes_item_state(tree: ast.AST) -> list[int]:
    """Lines that build `update(Item)` or assign `<x>.state` on something named like an item."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "update"
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "Item"
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "state"
                    and isinstance(target.value, ast.Name)
                    and "item" in target.value.id.lower()
                ):
                    lines.append(node.lineno)
    return lines


def test_no_module_but_stages_items_writes_item_state() -> None:
    offenders = []
    for folder in ("crowdloop", "flows", "models", "connectors"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "crowdloop" / "stages" / "items.py" or any(
                parent.is_symlink() for parent in path.parents
            ):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n in _writes_item_state(tree)]
    assert offenders == [], f"write item states through stages.items.move_items: {offenders}"
    # The check itself sees the one module that does write them.
    items = ROOT / "crowdloop" / "stages" / "items.py"
    assert _writes_item_state(ast.parse(items.read_text(encoding="utf-8")))

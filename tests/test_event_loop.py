"""The node runs on uvloop by default, on asyncio's loop when told, and
refuses a loop it does not know by name."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from node import event_loop
from node.cli import build_parser


def test_serve_runs_on_uvloop_unless_told_otherwise() -> None:
    assert event_loop.DEFAULT == "uvloop"
    args = build_parser().parse_args(["serve", "dir"])
    assert args.event_loop == "uvloop"
    assert build_parser().parse_args(["serve", "dir", "--event-loop", "asyncio"]).event_loop == "asyncio"


@pytest.mark.parametrize(("kind", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_run_uses_the_loop_asked_for(kind: str, loop_type: type) -> None:
    async def which() -> asyncio.AbstractEventLoop:
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    loop = event_loop.run(which(), kind)
    assert isinstance(loop, loop_type) and loop.is_closed()
    assert (kind == "uvloop") == isinstance(loop, uvloop.Loop)


def test_an_unknown_loop_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        event_loop.new_event_loop("trio")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "dir", "--event-loop", "trio"])
    assert "invalid choice: 'trio'" in capsys.readouterr().err

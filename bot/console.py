"""Chat with the bot in a terminal, no server needed: ``python -m bot.console``.

Uses the same engine, pipeline and database as the web channels (the app
factory supplies the configuration, so by default the SQLite database in the
instance folder). Type an answer (a listed option by its number), or pick a
button shown as ``[#2]`` by typing ``#2``; Ctrl-D (end of input) quits.
Handy for trying the questionnaire and for scripted checks::

    printf '1\\n4\\n' | python -m bot.console --user demo
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.pipeline import MessagePayload, PipelineResult, process_inbound

__all__ = ["main"]

#: Channel name recorded for terminal conversations.
CHANNEL = "console"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.console",
        description="Trò chuyện với Tự rà soát ngay trong cửa sổ dòng lệnh (Ctrl-D để thoát).",
    )
    parser.add_argument(
        "--user",
        default=None,
        help="who you are in the conversation (default: console-<login name>); "
        "the same name continues the same conversation",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="database to use instead of the app's DATABASE_URL",
    )
    return parser


def _print_messages(messages: Sequence[MessagePayload], out: TextIO) -> list[str]:
    """Print the bot's messages and their buttons; return the buttons' payloads.

    When the text already lists the options as "1. ...", "2. ..." (the engine
    does that for channels without buttons), typing the number is the answer
    and the buttons are not repeated. Other buttons (e.g. "Không có" under a
    question that expects a number) are shown as ``[#1] Không có``: a plain
    digit there must stay a number, so a button is picked with ``#1``.
    """
    payloads: list[str] = []
    for message in messages:
        text = message["text"]
        out.write(f"\n{text}\n")
        choices = message["choices"]
        listed = bool(choices) and all(
            f"\n{i}. " in f"\n{text}" for i in range(1, len(choices) + 1)
        )
        for choice in choices:
            payloads.append(choice["payload"])
            if not listed:
                out.write(f"  [#{len(payloads)}] {choice['label']}\n")
    out.flush()
    return payloads


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the terminal chat until end of input.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
        stdin: Where answers are read from (default: ``sys.stdin``).
        stdout: Where the bot's messages go (default: ``sys.stdout``).

    Returns:
        The process exit status.
    """
    args = _parser().parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    user = args.user or f"console-{getpass.getuser()}"

    from bot import create_app
    from bot.conversation import Inbound
    from bot.store import get_store

    overrides = {"DATABASE_URL": args.database_url} if args.database_url else None
    app = create_app(overrides)
    store = get_store(app)
    interactive = stdin.isatty()

    def send(inbound: Inbound) -> PipelineResult:
        with store.sessions() as session:
            return process_inbound(
                session, CHANNEL, user, None, inbound, synchronous=True, store_address=False
            )

    with app.app_context():
        # "Opened the chat": greets a new person, shows a returning one where they left off.
        choices = _print_messages(send(Inbound(kind="follow")).messages, stdout)
        while True:
            if interactive:
                stdout.write("> ")
                stdout.flush()
            try:
                line = stdin.readline()
            except KeyboardInterrupt:
                line = ""
            if not line:  # end of input (Ctrl-D, or the end of a piped script)
                stdout.write("\nTạm biệt! Lần sau gõ lại lệnh này để tiếp tục.\n")
                break
            text = line.strip()
            if not text:
                continue
            if not interactive:
                stdout.write(f"> {text}\n")  # a transcript reads like the conversation
            number = text[1:].strip()
            if text.startswith("#") and number.isdigit() and 1 <= int(number) <= len(choices):
                inbound = Inbound(payload=choices[int(number) - 1], kind="payload")
            else:
                inbound = Inbound(text=text, kind="text")
            choices = _print_messages(send(inbound).messages, stdout)
    store.engine.dispose()
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

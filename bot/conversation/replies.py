"""Reading what the user sent: normalisation, global commands, yes/no, choices and multiple choices.

Everything here works on one ``Reply`` (an inbound event folded once) against tables the questionnaire loader
precomputed, so reading a reply costs a few dictionary look-ups and at most one precompiled regex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bot.parsing.text import fold

from .messages import Inbound
from .questionnaire import ChoiceSpec, Question, Questionnaire, normalize

__all__ = ["Reply", "ReplyReader", "read_inbound", "NUMBER_REPLY", "COMMANDS"]

#: Replies longer than this are not even folded (keywords and answers are short).
_MAX_FOLD: Final = 1000
_MEDIA_KINDS: Final = frozenset({"media", "sticker", "unsupported"})
#: Global commands, also reachable as button payloads ``cmd:<name>``.
COMMANDS: Final = frozenset(
    {"restart", "back", "help", "pause", "resume", "erase", "new_household", "households", "unlink"}
)
#: "2", "số 2", "chọn 2": a numbered choice (on folded text).
NUMBER_REPLY: Final = re.compile(r"^(?:so |chon |cau |phuong an )?([0-9]{1,3})$")
_MULTI_SPLIT: Final = re.compile(r"[\s,.;/+&-]+")
_LABEL_SPLIT: Final = re.compile(r"\s*(?:,|;|\+|\bva\b|\bvoi\b)\s*")
_MULTI_FILLER: Final = frozenset({"va", "and", "so", "chon", "cau"})


@dataclass(frozen=True, slots=True)
class Reply:
    """One inbound event, normalised once per step."""

    kind: str  # text | payload | media | follow | unfollow
    text: str  # what was typed ("" for buttons and media)
    payload: str | None = None  # the button payload without its step prefix
    prefix: str | None = None  # the step id the button belongs to, when it carries one
    folded: str = ""  # fold(text): accent-insensitive key
    accented: str = ""  # normalize(text): lower-case with accents
    has_accents: bool = False
    too_long: bool = False

    @property
    def raw(self) -> str:
        """What to record as the raw answer."""
        if self.payload is not None:
            return f"{self.prefix}:{self.payload}" if self.prefix else self.payload
        return self.text


def read_inbound(inbound: Inbound, max_answer_chars: int) -> Reply:
    """Normalise one inbound event; replies over ``max_answer_chars`` are flagged too long."""
    kind = inbound.kind if isinstance(inbound.kind, str) else "text"
    if kind in _MEDIA_KINDS:
        return _NOTHING_TYPED["media"]
    if kind in ("follow", "unfollow"):
        return _NOTHING_TYPED[kind]
    payload = inbound.payload if isinstance(inbound.payload, str) else ""
    payload = payload.strip()[:200]
    if payload:
        prefix, sep, bare = payload.rpartition(":")
        return Reply("payload", "", payload=bare, prefix=prefix if sep else None)
    text = inbound.text.strip() if isinstance(inbound.text, str) else ""
    if len(text) > _MAX_FOLD:
        return Reply("text", text, too_long=True)
    accented = normalize(text)
    return Reply(
        "text",
        text,
        folded=fold(text),
        accented=accented,
        has_accents=any(ord(ch) > 127 for ch in accented),
        too_long=len(text) > max_answer_chars,
    )


_NOTHING_TYPED: Final = {kind: Reply(kind, "") for kind in ("media", "follow", "unfollow")}


class ReplyReader:
    """Reads replies against one questionnaire.

    Args:
        qn: the compiled questionnaire (keyword tables, yes/no/none words).
        parse_int: number parser for choices typed as words ("hai" for 2).
    """

    def __init__(self, qn: Questionnaire, parse_int: Callable[[str], int | None]) -> None:
        self.qn = qn
        self._parse_int = parse_int
        self._yes_labels = frozenset({fold(qn.msg("confirm_yes")), fold(qn.msg("answer_yes"))})
        self._no_labels = frozenset({fold(qn.msg("confirm_no")), fold(qn.msg("answer_no"))})

    def keyword(self, reply: Reply, *, accepts_yes: bool) -> str | None:
        """Return the global command the reply is, if any."""
        if reply.payload is not None:
            if reply.prefix == "cmd" and reply.payload in COMMANDS:
                return reply.payload
            return None
        if reply.kind != "text" or not reply.folded or len(reply.folded) > 40:
            return None
        qn = self.qn
        if reply.has_accents:
            action = qn.keyword_accented.get(reply.accented)
            if action is not None:
                return action
            if reply.folded in qn.ambiguous_keywords:
                return None  # "đúng" typed with accents is an answer, not "dừng"
            return qn.keyword_plain.get(reply.folded)
        action = qn.keyword_plain.get(reply.folded)
        if action is not None and accepts_yes and reply.folded in qn.ambiguous_keywords:
            return None  # unaccented "dung" where yes/no is expected means "đúng"
        return action

    def yes_no(self, reply: Reply, *, numbers: bool = True) -> bool | None:
        """Read yes/no: button, "1"/"2" (when ``numbers``), or a yes/no word with or without accents."""
        if reply.payload is not None:
            return {"yes": True, "no": False}.get(reply.payload)
        folded = reply.folded
        if numbers and folded in ("1", "2"):
            return folded == "1"
        words = self.qn.words
        if folded in words["yes"] or folded in self._yes_labels:
            return True
        if folded in words["no"] or folded in self._no_labels:
            return False
        return None

    def choice(
        self, q: Question, choices: Sequence[ChoiceSpec], reply: Reply, *, numbered: bool = True
    ) -> ChoiceSpec | None:
        """Find the choice a reply selects: button payload, number, typed label or alias (accents optional)."""
        if reply.payload is not None:
            choice = q.choice_by_payload.get(reply.payload)
            return choice if choice is not None and choice in choices else None
        return self.text_choice(
            q, choices, reply.folded, reply.accented if reply.has_accents else None, reply.text, numbered
        )

    def text_choice(
        self,
        q: Question,
        choices: Sequence[ChoiceSpec],
        folded: str,
        accented: str | None,
        text: str,
        numbered: bool,
    ) -> ChoiceSpec | None:
        """Find the choice typed text selects: number, label or alias, a label inside the text, a number word."""
        if not folded:
            return None
        if numbered:
            number = NUMBER_REPLY.match(folded)
            if number:
                n = int(number.group(1))
                return choices[n - 1] if 1 <= n <= len(choices) else None
        choice = q.accented_index.get(accented) if accented else None
        if choice is None:
            choice = q.folded_index.get(folded)
        if choice is not None:
            return choice if choice in choices else None
        if len(folded) >= 3:
            # "nhà tôi dùng nước máy": a label or alias inside the reply, or the reply inside one label only.
            padded = f" {folded} "
            hits = {
                c
                for c in choices
                if any(len(k) >= 3 and f" {k} " in padded for k in c.keys) or f" {folded} " in f" {c.folded_label} "
            }
            if len(hits) == 1:
                return hits.pop()
        if numbered and text:
            word_number = self._parse_int(text)  # "hai" → 2
            if isinstance(word_number, int) and 1 <= word_number <= len(choices):
                return choices[word_number - 1]
        return None

    def multi(self, q: Question, choices: Sequence[ChoiceSpec], reply: Reply) -> list[ChoiceSpec] | None:
        """Read "1,3", "1 3", "13", "ti vi và điện thoại", "không"; None if the reply is not understood."""
        if reply.payload is not None:
            if reply.payload == "none":
                return []
            choice = q.choice_by_payload.get(reply.payload)
            return [choice] if choice is not None and choice in choices else None
        folded = reply.folded
        if folded in self.qn.words["none"]:
            return []
        tokens = [t for t in _MULTI_SPLIT.split(folded) if t and t not in _MULTI_FILLER]
        # isascii: "²".isdigit() is true, but int("²") fails.
        if tokens and all(t.isascii() and t.isdigit() for t in tokens):
            numbers: list[int] = []
            for t in tokens:
                n = int(t)
                if 1 <= n <= len(choices):
                    numbers.append(n)
                elif len(t) > 1 and all("1" <= d <= str(min(len(choices), 9)) for d in t):
                    numbers.extend(int(d) for d in t)  # "13" typed for "1,3"
                else:
                    return None
            return [choices[n - 1] for n in sorted(set(numbers))]
        picked: list[ChoiceSpec] = []
        for part in _LABEL_SPLIT.split(folded):
            if not part:
                continue
            choice = self.text_choice(q, choices, part, None, "", numbered=True)
            if choice is None:
                return None
            if choice not in picked:
                picked.append(choice)
        if not picked:
            return None
        order = {c.payload: i for i, c in enumerate(choices)}
        return sorted(picked, key=lambda c: order[c.payload])

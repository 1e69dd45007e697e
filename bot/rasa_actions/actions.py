"""Custom actions of the Rasa project in ``rasa/``: assess the household, ask a pending follow-up, start over.

Thin on purpose: slots go through the engine bridge to ``assessment.assess`` and back through the engine's own
result formatter (``bot.conversation.result.render_result``), so a Rasa user reads the very same result text as
a user of our own channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.events import (
    ActiveLoop,
    AllSlotsReset,
    EventType,
    FollowupAction,
    SlotSet,
)
from rasa_sdk.interfaces import ActionExecutionRejection

from assessment import InputError
from bot.conversation.messages import split_text
from bot.conversation.result import render_result

from .bridge import (
    FOLLOWUP_STATE_SLOT,
    FORM_NAME,
    REFERENCE_DATE_SLOT,
    Bridge,
    choose_payload,
    default_bridge,
    reference_date,
)

if TYPE_CHECKING:  # pragma: no cover
    from rasa_sdk.executor import CollectingDispatcher
    from rasa_sdk.types import DomainDict

__all__ = [
    "ACTION_ASK_FOLLOWUP",
    "ACTION_ASSESS",
    "ACTION_RESET",
    "DEPRIVATIONS_SLOT",
    "STATUS_SLOT",
    "UTTER_AFTER_RESULT",
    "ActionAskFollowup",
    "ActionAssessHousehold",
    "ActionResetHousehold",
]

ACTION_ASSESS: Final = "action_assess_household"
ACTION_RESET: Final = "action_reset_household"
#: Rasa's form looks for ``action_ask_<slot>`` before ``utter_ask_<slot>``.
ACTION_ASK_FOLLOWUP: Final = "action_ask_followup"
STATUS_SLOT: Final = "status"
DEPRIVATIONS_SLOT: Final = "deprivations"
#: Said after the result instead of the engine's closing line, which offers "sửa câu" (not available in Rasa).
UTTER_AFTER_RESULT: Final = "utter_after_result"


def _buttons(choices: Any) -> list[dict[str, str]]:
    return [{"title": c.label, "payload": choose_payload(c.payload)} for c in choices]


class ActionAssessHousehold(Action):
    """Runs the legal core on the completed form and tells the household its result."""

    def name(self) -> str:
        """Return the action name used in ``rasa/domain.yml`` and the submit rule."""
        return ACTION_ASSESS

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        """Assess, utter the result text in channel-sized chunks, and set ``status`` and ``deprivations``.

        Raises:
            ActionExecutionRejection: a required slot is still empty (the form has not been completed); the SDK
                answers HTTP 400 and Rasa predicts another action instead of assessing half a household.
        """
        bridge: Bridge = default_bridge()
        on = reference_date(tracker.slots)
        missing = bridge.missing_slots(tracker.slots, on)
        if missing:
            raise ActionExecutionRejection(self.name(), f"{FORM_NAME} is not complete, missing: {', '.join(missing)}")
        try:
            _, result = bridge.assess(tracker.slots, on)
        except InputError as exc:
            # The core refuses an answer (e.g. a commune it does not know): say why and ask that question again.
            problem = exc.problems[0]
            slot = bridge.slot_for_field(problem.field)
            if slot is None:
                raise
            dispatcher.utter_message(text=problem.message_vi)
            return [SlotSet(slot, None), FollowupAction(FORM_NAME)]
        text = render_result(bridge.qn, result, share=False)
        closing = bridge.qn.msg("result_after")
        if text.endswith(closing):
            text = text[: -len(closing)].rstrip()
        for chunk in split_text(text):
            dispatcher.utter_message(text=chunk)
        dispatcher.utter_message(response=UTTER_AFTER_RESULT)
        return [
            SlotSet(STATUS_SLOT, result["status"]),
            SlotSet(DEPRIVATIONS_SLOT, list(result.get("deprivations") or [])),
        ]


class ActionAskFollowup(Action):
    """Asks the pending engine sub-step (read-back confirmation, commune pick list, income helper) with buttons."""

    def name(self) -> str:
        """Return the name by which the form finds how to ask for the ``followup`` slot."""
        return ACTION_ASK_FOLLOWUP

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        """Utter the engine's own prompt for the sub-step, its buttons as ``/choose`` payloads."""
        bridge = default_bridge()
        view = bridge.followup_view(tracker.slots, reference_date(tracker.slots))
        if view is None:
            # Nothing (valid) pending: drop it; the next reply answers the question itself.
            return [SlotSet(FOLLOWUP_STATE_SLOT, None)]
        text, choices = view
        dispatcher.utter_message(text=text, buttons=_buttons(choices))
        return []


class ActionResetHousehold(Action):
    """Forgets every answer and stops the form ("làm lại"); the rules then start the form again."""

    def name(self) -> str:
        """Return the action name used by the restart and start rules."""
        return ACTION_RESET

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        """Reset all slots but the deployment's pinned reference date, and deactivate the form."""
        bridge = default_bridge()
        if any(tracker.get_slot(s) is not None for s in bridge.form_slots):
            # As in the engine: "starting over" is only said to someone who had started.
            dispatcher.utter_message(text=bridge.qn.msg("restarted"))
        events: list[EventType] = [AllSlotsReset(), ActiveLoop(None)]
        pinned = tracker.get_slot(REFERENCE_DATE_SLOT)
        if pinned is not None:
            events.append(SlotSet(REFERENCE_DATE_SLOT, pinned))
        return events

"""``validate_household_form``: the Rasa form's slot validation, delegated to our conversation engine.

Each ``validate_<slot>`` method is one line: the bridge runs the engine on the reply, and this module only turns
the engine's outcome into Rasa's vocabulary (slot values, ``None`` for a refused answer, utterances). A command
word the engine recognises ("dừng", "làm lại") is not an answer: the action rejects itself (HTTP 400), exactly
as Rasa's own ``FormAction`` does when the requested slot was not extracted, so Rasa's rules can handle it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction
from rasa_sdk.interfaces import ActionExecutionRejection

from .bridge import (
    FOLLOWUP_SLOT,
    FOLLOWUP_STATE_SLOT,
    FORM_NAME,
    Bridge,
    Outcome,
    default_bridge,
    reference_date,
)

if TYPE_CHECKING:  # pragma: no cover
    from rasa_sdk.executor import CollectingDispatcher
    from rasa_sdk.types import DomainDict

__all__ = ["VALIDATE_FORM", "ValidateHouseholdForm"]

VALIDATE_FORM: Final = f"validate_{FORM_NAME}"

Slots = dict[str, Any]


class ValidateHouseholdForm(FormValidationAction):
    """Validates every slot of ``household_form`` with the engine's parsers and validators."""

    def name(self) -> str:
        """Return the action name Rasa calls for this form (``validate_household_form``)."""
        return VALIDATE_FORM

    @property
    def bridge(self) -> Bridge:
        """Return the shared engine bridge (built on first use, so the server starts fast)."""
        return default_bridge()

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        """Apply the questionnaire's skip conditions to the domain's slot list, plus a pending ``followup``."""
        return self.bridge.required_slots(tracker.slots, reference_date(tracker.slots))

    async def next_requested_slot(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> EventType | None:
        """Name the next slot, always (``None`` when complete, which ends the form).

        The SDK leaves the choice to Rasa when our list happens to equal the domain's; Rasa would then ask the
        first empty slot of the domain list, ``followup`` included, though nothing is pending.
        """
        missing = self.bridge.missing_slots(tracker.slots, reference_date(tracker.slots))
        return SlotSet(REQUESTED_SLOT, missing[0] if missing else None)

    # -- one method per slot; the SDK finds them by name --------------------------------------------------------

    def validate_commune(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the commune or ward: current or pre-2025 name, accents optional; "không biết" asks the area."""
        return self._question("commune", value, dispatcher, tracker)

    def validate_area(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate urban (phường) or rural (xã), asked only when the commune is unknown."""
        return self._question("area", value, dispatcher, tracker)

    def validate_household_size(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the number of people sharing meals and expenses: 1 to 50, digits or words."""
        return self._question("household_size", value, dispatcher, tracker)

    def validate_children(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the children under 16: never more than the household (sets ``dependants``)."""
        return self._question("children", value, dispatcher, tracker)

    def validate_allowance(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the members on a monthly social allowance: with the children, never more than the household."""
        return self._question("allowance", value, dispatcher, tracker)

    def validate_income(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the monthly income ("1tr5"; "60 triệu một năm" → per month, read back), or open the helper."""
        return self._question("income", value, dispatcher, tracker)

    def validate_working_age_unemployed_or_no_contract(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate yes/no: a working-age member without a job or without a labour contract."""
        return self._indicator("working_age_unemployed_or_no_contract", value, dispatcher, tracker)

    def validate_member_6plus_without_health_insurance(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate yes/no: a member aged 6 or more without a valid health insurance card."""
        return self._indicator("member_6plus_without_health_insurance", value, dispatcher, tracker)

    def validate_member_16_30_lacking_education(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate yes/no: a member aged 16-30 out of school without upper-secondary or vocational training."""
        return self._indicator("member_16_30_lacking_education", value, dispatcher, tracker)

    def validate_child_under16_malnourished(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate yes/no: a child under 16 found malnourished (asked only when there are children)."""
        return self._indicator("child_under16_malnourished", value, dispatcher, tracker)

    def validate_child_3_15_not_in_school(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate yes/no: a child aged 3-15 not in school (asked only when there are children)."""
        return self._indicator("child_3_15_not_in_school", value, dispatcher, tracker)

    def validate_housing(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the type of home: numbered reply, button payload or label ("nhà cấp 4"), accents optional."""
        return self._question("housing", value, dispatcher, tracker)

    def validate_floor_area(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the living floor area in m² ("40", "40m2"; "5x8" is read back), 1 to 5,000."""
        return self._question("floor_area", value, dispatcher, tracker)

    def validate_water(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the main drinking-water source: numbered reply, button payload or label."""
        return self._question("water", value, dispatcher, tracker)

    def validate_toilet(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the toilet type: numbered reply, button payload or label."""
        return self._question("toilet", value, dispatcher, tracker)

    def validate_devices(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the information devices and Internet use ("1,4,6", "ti vi và điện thoại", "không")."""
        return self._question("devices", value, dispatcher, tracker)

    def validate_waste(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the household waste handling (an indicator of the 2027–2030 standard)."""
        return self._question("waste", value, dispatcher, tracker)

    def validate_followup(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        """Validate the reply to a pending sub-step: a read-back confirmation, a commune pick, the income helper."""
        bridge = self.bridge
        question = bridge.pending_question(tracker.slots)
        if question is None:
            # Nothing pending (a stale requested_slot): drop the value; the form asks the next slot.
            return {FOLLOWUP_SLOT: None, FOLLOWUP_STATE_SLOT: None}
        sub = tracker.slots[FOLLOWUP_STATE_SLOT]["sub"]
        return self._question(question, value, dispatcher, tracker, sub=sub)

    # -- shared logic ------------------------------------------------------------------------------------------

    def _on(self, tracker: Tracker) -> dt.date:
        return reference_date(tracker.slots)

    def _question(
        self,
        question: str,
        value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        sub: Any = None,
    ) -> Slots:
        bridge = self.bridge
        if sub is None and bridge.is_settled(bridge.slot_of_question[question], value, tracker.slots):
            return {bridge.slot_of_question[question]: value}
        on = self._on(tracker)
        inbound = bridge.inbound(value, tracker.latest_message)
        outcome = bridge.probe(question, inbound, tracker.slots, on, sub=sub)
        return self._apply(question, outcome, dispatcher, tracker, on, from_followup=sub is not None)

    def _indicator(self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker) -> Slots:
        bridge = self.bridge
        if bridge.is_settled(slot, value, tracker.slots):
            return {slot: value}
        spec = bridge.by_slot[slot]
        outcome = bridge.yes_no(spec.question, bridge.inbound(value, tracker.latest_message))
        if outcome.kind == "command":
            self._reject(outcome, slot)
        if outcome.lead:
            dispatcher.utter_message(text=outcome.lead)
        return {slot: outcome.value if outcome.kind == "answer" else None}

    def _apply(
        self,
        question: str,
        outcome: Outcome,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        on: dt.date,
        *,
        from_followup: bool,
    ) -> Slots:
        """Turn an engine outcome into slot values (and utterances)."""
        bridge = self.bridge
        slot = bridge.slot_of_question[question]
        if outcome.kind == "command":
            self._reject(outcome, FOLLOWUP_SLOT if from_followup else slot)
        if outcome.lead:
            dispatcher.utter_message(text=outcome.lead)
        out: Slots = {}
        if from_followup:
            out[FOLLOWUP_SLOT] = None  # a transient carrier: the form asks it again while a sub-step is pending
        if outcome.kind == "answer":
            out[slot] = bridge.slot_value(question, outcome.entry, tracker.slots, on)
            out.update(bridge.derived(question, outcome.entry, tracker.slots, on))
            if from_followup or tracker.get_slot(FOLLOWUP_STATE_SLOT) is not None:
                out[FOLLOWUP_STATE_SLOT] = None
            return out
        out[slot] = None
        if outcome.kind == "followup" and outcome.sub is not None:
            out[FOLLOWUP_STATE_SLOT] = {"q": question, "sub": dict(outcome.sub)}
            out.update(bridge.tentative(question, outcome.sub))
            return out
        # retry: refused, or a sub-step cancelled ("không đúng", "quay lại"): the question is asked again.
        if from_followup or tracker.get_slot(FOLLOWUP_STATE_SLOT) is not None:
            out[FOLLOWUP_STATE_SLOT] = None
        if from_followup:
            out.update(bridge.tentative(question, {}))
        return out

    def _reject(self, outcome: Outcome, slot: str) -> None:
        """Refuse to handle a global command as an answer (the SDK answers HTTP 400; Rasa's rules take over)."""
        raise ActionExecutionRejection(
            self.name(), f"'{outcome.command}' is a conversation command, not a value for slot '{slot}'"
        )

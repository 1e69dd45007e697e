"""Rasa custom actions of Tự rà soát, served by the Rasa SDK action server.

    python -m rasa_sdk --actions bot.rasa_actions          # port 5055: /health, /actions, /webhook

The server registers every ``Action`` subclass of this package:

* ``validate_household_form`` (:class:`forms.ValidateHouseholdForm`): validates each slot of ``household_form``
  by running our conversation engine on the reply (same parsers, same validators, same Vietnamese hints);
* ``action_assess_household`` (:class:`actions.ActionAssessHousehold`): runs ``assessment.assess`` and utters the
  engine's result text; sets ``status`` and ``deprivations``;
* ``action_ask_followup`` (:class:`actions.ActionAskFollowup`): asks a pending read-back, pick list or income
  helper step;
* ``action_reset_household`` (:class:`actions.ActionResetHousehold`): starts over.

The Rasa project that calls them is in ``rasa/`` (Rasa 3.6, Python 3.10). Set ``TUSOAT_REFERENCE_DATE`` (ISO date)
to pin the assessment date of the whole server, or the ``reference_date`` slot for one conversation.
"""

from .actions import ActionAskFollowup, ActionAssessHousehold, ActionResetHousehold
from .forms import ValidateHouseholdForm

__all__ = ["ActionAskFollowup", "ActionAssessHousehold", "ActionResetHousehold", "ValidateHouseholdForm"]

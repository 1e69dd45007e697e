"""The conversation engine of Tự rà soát: questionnaire as data, a pure state machine over it (contract section 5).

    from bot.conversation import Engine, Inbound, default_engine
    engine = default_engine()                       # questionnaire loaded and compiled once
    res = engine.step(state, Inbound(text="4"), now)
    # res: StepResult(state, messages, events, question_id, done, assessment)

The engine knows nothing of HTTP, channels or the database: the caller saves ``res.state`` (JSON), persists
``res.events`` and sends ``res.messages``.
"""

from .engine import STATE_VERSION, Engine, default_engine
from .messages import INTERNAL_KINDS, MAX_CHUNK, Choice, Inbound, Outbound, StepResult, split_text
from .questionnaire import DEFAULT_PATH, Questionnaire, QuestionnaireError, load_questionnaire, parse_questionnaire
from .services import Services, default_services, hamlet_source

__all__ = [
    "DEFAULT_PATH",
    "INTERNAL_KINDS",
    "MAX_CHUNK",
    "STATE_VERSION",
    "Choice",
    "Engine",
    "Inbound",
    "Outbound",
    "Questionnaire",
    "QuestionnaireError",
    "Services",
    "StepResult",
    "default_engine",
    "default_services",
    "hamlet_source",
    "load_questionnaire",
    "parse_questionnaire",
    "split_text",
]

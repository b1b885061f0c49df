"""From words to an objective: "it must not rely on chest drains" -> a typed, editable target.

An objective names a confounder from the datacard, the measure of reliance on it,
the most reliance accepted, and the least accuracy accepted. The review gate shows
it and the clinician can edit the numbers; refinement rounds run until it is met
and the clinician approves.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from medbuilder.protocol.datacard import Confounder, Datacard

Measure = Literal["counterfactual_flip_rate", "attribution_share", "subgroup_gap", "confounded_fpr"]

NEGATION = (r"(?:must not|mustn.t|should not|shouldn.t|do not|don.t|not|never|without|instead of|rather than|ignore|ignoring|"
            r"no reliance on|independent of|regardless of)")
# Words a request uses for burnt-in text and similar marks, besides what the datacard lists.
GENERIC_SYNONYMS = {"text": ["text", "writing", "letters", "labels", "annotations", "watermark", "watermarks", "marks"]}


class Objective(BaseModel):
    confounder: str = Field(description="The datacard's name for it.")
    measure: Measure = Field(description="Which reliance measure must stay low (docs/shortcut_measures.md).")
    max_reliance: float = Field(ge=0, le=1, description="The measure must be at most this.")
    max_metric_drop: float = Field(0.02, ge=0, le=1, description="The task metric may fall at most this much "
                                                                 "below round 0.")
    words: str = Field(description="The clinician's words it came from.")

    def describe(self) -> str:
        return (f"reliance on **{self.confounder}**: {self.measure.replace('_', ' ')} at most {self.max_reliance:.2f}, "
                f"with the test metric no more than {self.max_metric_drop:.2f} below round 0")


def _names(confounder: Confounder) -> list[str]:
    names = [confounder.name, *confounder.synonyms]
    for key, words in GENERIC_SYNONYMS.items():
        if key in confounder.name.lower():
            names += words
    singular = [n[:-1] for n in names if n.endswith("s")]
    return sorted({n.lower() for n in names + singular}, key=len, reverse=True)


def _negated_mention(text: str, names: list[str]) -> str | None:
    """The clause where a name appears after a negation ("not ... drains"), if any."""
    for clause in re.split(r"[.;!?]", text.lower()):
        for name in names:
            if re.search(rf"{NEGATION}\b[^.;]*?\b{re.escape(name)}", clause):
                return clause.strip()
    return None


def default_measure(confounder: Confounder) -> tuple[Measure, float]:
    """Counterfactual flip rate where the confounder can be toggled; attribution share for a region."""
    if confounder.counterfactual_column or confounder.roi:
        return "counterfactual_flip_rate", 0.25
    if confounder.mask_column:
        return "attribution_share", 0.25
    return "subgroup_gap", 0.1


def objective_from_text(text: str, card: Datacard) -> Objective | None:
    """The objective the words state about one of the card's confounders, or None."""
    for confounder in card.confounders:
        clause = _negated_mention(text, _names(confounder))
        if clause:
            measure, limit = default_measure(confounder)
            return Objective(confounder=confounder.name, measure=measure, max_reliance=limit, words=clause)
    return None

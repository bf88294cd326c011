"""The preference-tuning task family (DPO, ORPO, KTO through TRL): ``task.py`` the family,
``forms.py`` the preference data forms it reads (TRL's pairs, UltraFeedback, Anthropic HH, KTO's
labelled rows), ``trainers.py`` TRL's trainers and the rows they get, ``scoring.py`` preference
accuracy and implicit rewards on held-out pairs. The chat model itself (loading, export, answers)
and the chat template's rendering are shared with instruction tuning in ``tasks/causal_lm/``."""

from finetune_assets.tasks.preference.task import Preference

__all__ = ["Preference"]

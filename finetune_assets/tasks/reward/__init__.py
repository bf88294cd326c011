"""The reward-driven tuning family (GRPO through TRL): ``task.py`` the family, ``functions.py`` the
shipped reward functions, ``rewards.py`` a recipe's reward functions loaded, versioned by their
source and called as TRL calls them, ``scoring.py`` rewards, pass@k and greedy accuracy on held-out
prompts. The chat model itself (loading, export, answers) is shared with the other chat families in
``tasks/causal_lm/``."""

from finetune_assets.tasks.reward.task import Reward

__all__ = ["Reward"]

"""Attacks that test whether forgetting is real: relearning, quantisation, prompts (docs/method.md, section 9)."""

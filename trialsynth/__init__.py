"""trialsynth."""

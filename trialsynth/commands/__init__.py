"""Sub-commands of the trialsynth CLI (each module exposes ``register(subparsers)``)."""

"""The cognitive rules: fan effect, priming, interference, reconsolidation."""

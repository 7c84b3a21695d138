"""Sharing a model's engines between keys: priorities sent to the engines (classes.py) and the
gateway's weighted fair queue in front of a saturated model."""

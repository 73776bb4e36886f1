"""Simulated cameras with known truth (``calstack simulate``) and the demo that runs the reference
recipe on them (``calstack demo``).
"""

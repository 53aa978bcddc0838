"""The lifecycle rules: pure functions from a contact's state and triggers to a Decision.

No I/O, clock, environment or logging here (tests/unit/test_purity.py enforces it);
configuration arrives as a `Policy`, time as an argument.
"""

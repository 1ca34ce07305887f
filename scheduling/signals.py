"""Signals scheduling sends so that higher apps can react without scheduling importing them."""

from django.dispatch import Signal

# Sent on every tick of `scheduling_sweep` (once a minute in the worker): periodic upkeep of other apps
# (the video app ends visits whose participants all left and whose process died before its timer ran).
periodic_upkeep = Signal()
